/*
 * quants_avx512.c - AVX-512 kernels (placeholder: no overrides yet).
 */
#include "kernels/quants.h"

void kn_quants_avx512_fill(kn_traits *tab)
{
    (void)tab;
}
