/*
 * clones.h — for the runtime's own files, not generated code: how a
 * function is built for several instruction sets, the best picked when
 * the program loads (GCC's and clang's function multiversioning), so that
 * the library itself is built for any x86-64.
 *
 * LM_MULTIVERSION: the function is built for AVX-512, for AVX2 with FMA
 * (Haswell) and for plain x86-64.
 * LM_INLINE: a helper compiled into each clone that calls it.
 */
#ifndef LM_CLONES_H
#define LM_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define LM_MULTIVERSION __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define LM_MULTIVERSION
#endif

#if defined(__GNUC__)
#define LM_INLINE __attribute__((always_inline)) inline
#else
#define LM_INLINE
#endif

#endif
