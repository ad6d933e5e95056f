/*
 * quants_avx2.c - the AVX2 level (with FMA and F16C): the 256-bit kernels of
 * quants_x86.h built with maddubs/madd int8 arithmetic, including the
 * vec_dot_rows (decode GEMV) kernels of Q4_0, Q8_0, Q4_K, Q5_K, Q6_K.
 * Entries not listed in kn_quants_avx2_fill keep the scalar reference.
 */
#define KN_X86_AVX512 0
#include "kernels/quants_x86.h"

void kn_quants_avx2_fill(kn_traits *tab)
{
    tab[VT_TYPE_F32].vec_dot = dot_f32;
    tab[VT_TYPE_F16].vec_dot = dot_f16;
    tab[VT_TYPE_F16].to_float = f16_to_float;
    tab[VT_TYPE_F16].from_float = f16_from_float;
    tab[VT_TYPE_BF16].vec_dot = dot_bf16_ymm;
    tab[VT_TYPE_BF16].to_float = bf16_to_float;
    tab[VT_TYPE_BF16].from_float = bf16_from_float;
    tab[VT_TYPE_Q4_0].vec_dot = dot_q4_0;
    tab[VT_TYPE_Q4_1].vec_dot = dot_q4_1;
    tab[VT_TYPE_Q5_0].vec_dot = dot_q5_0;
    tab[VT_TYPE_Q5_1].vec_dot = dot_q5_1;
    tab[VT_TYPE_Q8_0].vec_dot = dot_q8_0;
    tab[VT_TYPE_Q8_0].from_float = q8_0_from_float;
    tab[VT_TYPE_Q8_1].from_float = q8_1_from_float;
    tab[VT_TYPE_Q2_K].vec_dot = dot_q2_K;
    tab[VT_TYPE_Q3_K].vec_dot = dot_q3_K;
    tab[VT_TYPE_Q4_K].vec_dot = dot_q4_K;
    tab[VT_TYPE_Q5_K].vec_dot = dot_q5_K;
    tab[VT_TYPE_Q6_K].vec_dot = dot_q6_K;
    tab[VT_TYPE_Q8_K].from_float = q8_K_from_float;
    tab[VT_TYPE_Q4_0].vec_dot_rows = rows_q4_0;
    tab[VT_TYPE_Q8_0].vec_dot_rows = rows_q8_0;
    tab[VT_TYPE_Q4_K].vec_dot_rows = rows_q4_K;
    tab[VT_TYPE_Q5_K].vec_dot_rows = rows_q5_K;
    tab[VT_TYPE_Q6_K].vec_dot_rows = rows_q6_K;
}
