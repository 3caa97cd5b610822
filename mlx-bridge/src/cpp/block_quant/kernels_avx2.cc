// The x86 kernels for avx2; build.rs compiles this file alone with that ISA's -m flags.
#define BQ_ZMM 0
#define BQ_VNNI 0
#define BQ_TABLE_FN avx2_kernels
#define BQ_TABLE_NAME "avx2"
#include "kernels_x86.inc"
