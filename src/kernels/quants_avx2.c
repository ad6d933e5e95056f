/*
 * quants_avx2.c - AVX2/FMA/F16C kernels (placeholder: no overrides yet).
 */
#include "kernels/quants.h"

void kn_quants_avx2_fill(kn_traits *tab)
{
    (void)tab;
}
