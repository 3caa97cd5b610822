// The x86 kernels for avxvnni; build.rs compiles this file alone with that ISA's -m flags.
#define BQ_ZMM 0
#define BQ_VNNI 1
#define BQ_TABLE_FN avxvnni_kernels
#define BQ_TABLE_NAME "avxvnni"
#include "kernels_x86.inc"
