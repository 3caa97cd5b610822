// The x86 kernels for avx512vnni; build.rs compiles this file alone with that ISA's -m flags.
#define BQ_ZMM 1
#define BQ_VNNI 1
#define BQ_TABLE_FN avx512vnni_kernels
#define BQ_TABLE_NAME "avx512vnni"
#include "kernels_x86.inc"
