// Repacking GGUF blocks and MLX affine matrices into the interleaved layout (layout.h), and
// reading it back as floats (dequantize, gather).
#include "pack.h"

#include <cstring>
#include <sstream>
#include <stdexcept>

#include "codec.h"

namespace mlxcel::bq {

namespace {

[[noreturn]] void fail(const std::string& name, const std::string& why) {
  throw std::invalid_argument("block matrix " + name + ": " + why);
}

// The unsigned or signed codes of one GGUF block of `block_len(fmt)` values and its row
// parameters, decoded from ggml's byte layout (ggml-quants.c, dequantize_row_*).
struct GgufDecoded {
  std::uint8_t codes[kSuper];
  std::uint16_t d;       // f16 bits
  std::uint16_t m;       // f16 bits: Q4_1/Q5_1 min, K-quant dmin
  std::uint8_t sc[16];   // K-quant sub-block scales (Q6_K: signed, per 16)
  std::uint8_t mn[8];    // Q4_K/Q5_K sub-block mins
};

// The 6-bit (scale, min) of sub-block j from a Q4_K/Q5_K block's 12 packed bytes.
void kquant_scale_min(const std::uint8_t* q, int j, std::uint8_t& sc, std::uint8_t& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = static_cast<std::uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    mn = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void decode_gguf(Fmt f, const std::uint8_t* b, GgufDecoded& out) {
  switch (f) {
    case Fmt::Q8_0:
      out.d = load_u16(b);
      std::memcpy(out.codes, b + 2, 32);
      break;
    case Fmt::Q4_0:
    case Fmt::Q4_1: {
      out.d = load_u16(b);
      const std::uint8_t* qs = b + 2;
      if (f == Fmt::Q4_1) {
        out.m = load_u16(b + 2);
        qs = b + 4;
      }
      for (int j = 0; j < 16; ++j) {
        out.codes[j] = qs[j] & 0x0f;
        out.codes[j + 16] = qs[j] >> 4;
      }
      break;
    }
    case Fmt::Q5_0:
    case Fmt::Q5_1: {
      out.d = load_u16(b);
      const std::uint8_t* rest = b + 2;
      if (f == Fmt::Q5_1) {
        out.m = load_u16(b + 2);
        rest = b + 4;
      }
      std::uint32_t qh;
      std::memcpy(&qh, rest, 4);
      const std::uint8_t* qs = rest + 4;
      for (int j = 0; j < 16; ++j) {
        out.codes[j] = static_cast<std::uint8_t>((qs[j] & 0x0f) | (((qh >> j) & 1) << 4));
        out.codes[j + 16] = static_cast<std::uint8_t>((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
      }
      break;
    }
    case Fmt::Q4K:
    case Fmt::Q5K: {
      out.d = load_u16(b);
      out.m = load_u16(b + 2);
      for (int j = 0; j < 8; ++j) kquant_scale_min(b + 4, j, out.sc[j], out.mn[j]);
      const bool five = f == Fmt::Q5K;
      const std::uint8_t* qh = b + 16;
      const std::uint8_t* qs = five ? b + 48 : b + 16;
      for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
          const std::uint8_t q = qs[32 * c + l];
          int lo = q & 0x0f, hi = q >> 4;
          if (five) {
            lo |= ((qh[l] >> (2 * c)) & 1) << 4;
            hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
          }
          out.codes[64 * c + l] = static_cast<std::uint8_t>(lo);
          out.codes[64 * c + 32 + l] = static_cast<std::uint8_t>(hi);
        }
      break;
    }
    case Fmt::Q6K: {
      out.d = load_u16(b + 208);
      std::memcpy(out.sc, b + 192, 16);
      for (int h = 0; h < 2; ++h) {
        const std::uint8_t* ql = b + 64 * h;
        const std::uint8_t* qh = b + 128 + 32 * h;
        std::uint8_t* y = out.codes + 128 * h;
        for (int l = 0; l < 32; ++l) {
          y[l] = static_cast<std::uint8_t>((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4));
          y[32 + l] = static_cast<std::uint8_t>((ql[32 + l] & 0x0f) | (((qh[l] >> 2) & 3) << 4));
          y[64 + l] = static_cast<std::uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
          y[96 + l] = static_cast<std::uint8_t>((ql[32 + l] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
      }
      break;
    }
    default: break;
  }
}

void put_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}

// Writes the parameters of GGUF block `blk` (in units of the format's block) of row r.
void put_gguf_params(Fmt f, std::uint8_t* gp, int blk, int r, const GgufDecoded& d) {
  switch (f) {
    case Fmt::Q8_0:
    case Fmt::Q4_0:
    case Fmt::Q5_0: put_u16(gp + blk * 32 + 2 * r, d.d); break;
    case Fmt::Q4_1:
    case Fmt::Q5_1:
      put_u16(gp + blk * 64 + 2 * r, d.d);
      put_u16(gp + blk * 64 + 32 + 2 * r, d.m);
      break;
    case Fmt::Q4K:
    case Fmt::Q5K: {
      std::uint8_t* sb = gp + blk * 320;
      put_u16(sb + 2 * r, d.d);
      put_u16(sb + 32 + 2 * r, d.m);
      for (int j = 0; j < 8; ++j) {
        sb[64 + j * 16 + r] = d.sc[j];
        sb[192 + j * 16 + r] = d.mn[j];
      }
      break;
    }
    case Fmt::Q6K: {
      std::uint8_t* sb = gp + blk * 288;
      put_u16(sb + 2 * r, d.d);
      for (int j = 0; j < 16; ++j) sb[32 + j * 16 + r] = d.sc[j];
      break;
    }
    default: break;
  }
}

mx::array alloc_packed(const Layout& l) {
  mx::array out(mx::allocator::malloc(l.total), mx::Shape{static_cast<int>(l.total)}, mx::uint8);
  std::memset(out.data<std::uint8_t>(), 0, l.total);
  return out;
}

// Moves the codes of one row group, block-major staging `codes[r][col]`, into code blocks.
void write_group_codes(CodeKind kind, const std::uint8_t* staging, int cols, int nb, std::uint8_t* dst) {
  BlockCodes bc;
  const std::size_t bb = code_block_bytes(kind);
  for (int b = 0; b < nb; ++b) {
    for (int c = 0; c < 8; ++c)
      for (int r = 0; r < kRows; ++r)
        for (int t = 0; t < 4; ++t)
          bc.v[c][4 * r + t] = staging[static_cast<std::size_t>(r) * cols + b * kBlock + 4 * c + t];
    write_block(kind, bc, dst + b * bb);
  }
}

void check_shape(const std::string& name, int rows, int cols, int block) {
  if (rows <= 0 || cols <= 0) fail(name, "rows and cols must be positive, got " + std::to_string(rows) +
                                             " x " + std::to_string(cols));
  if (cols % block != 0)
    fail(name, "cols " + std::to_string(cols) + " is not a multiple of the block length " +
                   std::to_string(block));
}

}  // namespace

int gguf_block_len(Fmt f) {
  return f == Fmt::Q4K || f == Fmt::Q5K || f == Fmt::Q6K ? kSuper : kBlock;
}

int gguf_block_bytes(Fmt f) {
  switch (f) {
    case Fmt::Q8_0: return 34;
    case Fmt::Q4_0: return 18;
    case Fmt::Q4_1: return 20;
    case Fmt::Q5_0: return 22;
    case Fmt::Q5_1: return 24;
    case Fmt::Q4K: return 144;
    case Fmt::Q5K: return 176;
    case Fmt::Q6K: return 210;
    default: return 0;
  }
}

MatView view_of(const MatSpec& spec, const mx::array& packed) {
  const Layout l = layout_of(spec.fmt, spec.ptype, spec.group, spec.rows, spec.cols);
  if (packed.dtype() != mx::uint8 || packed.nbytes() != l.total)
    throw std::invalid_argument("block matrix " + spec.name + ": packed buffer has " +
                                std::to_string(packed.nbytes()) + " bytes, the layout needs " +
                                std::to_string(l.total));
  const std::uint8_t* base = packed.data<std::uint8_t>();
  return MatView{spec.fmt, spec.ptype, spec.group, spec.rows, spec.cols, l.groups, l.nb,
                 base, base + l.params_offset, l.code_group_bytes, l.param_group_bytes};
}

mx::array pack_gguf(const MatSpec& spec, const std::uint8_t* bytes, std::size_t nbytes) {
  const Fmt f = spec.fmt;
  if (f == Fmt::Affine4 || f == Fmt::Affine8) fail(spec.name, "affine matrices come from MLX arrays, not GGUF bytes");
  const int blen = gguf_block_len(f);
  check_shape(spec.name, spec.rows, spec.cols, blen);
  const std::size_t bpr = static_cast<std::size_t>(spec.cols / blen);  // blocks per row
  const std::size_t expected = static_cast<std::size_t>(spec.rows) * bpr * gguf_block_bytes(f);
  if (nbytes != expected) {
    std::ostringstream msg;
    msg << nbytes << " bytes given, " << spec.rows << " x " << spec.cols << " in " << format_name(f) << " is "
        << expected << " bytes" << (nbytes < expected ? " (truncated tensor?)" : "");
    fail(spec.name, msg.str());
  }
  const Layout l = layout_of(f, ParamType::F16, blen, spec.rows, spec.cols);
  mx::array out = alloc_packed(l);
  std::uint8_t* base = out.data<std::uint8_t>();
  const CodeKind kind = code_kind(f);
  std::vector<std::uint8_t> staging(static_cast<std::size_t>(kRows) * spec.cols);
  GgufDecoded dec{};
  for (int g = 0; g < l.groups; ++g) {
    std::fill(staging.begin(), staging.end(), 0);
    std::uint8_t* gp = base + l.params_offset + g * l.param_group_bytes;
    for (int r = 0; r < kRows; ++r) {
      const int row = g * kRows + r;
      if (row >= spec.rows) break;  // padding rows keep zero codes and zero scales
      const std::uint8_t* src = bytes + row * bpr * gguf_block_bytes(f);
      for (std::size_t blk = 0; blk < bpr; ++blk) {
        decode_gguf(f, src + blk * gguf_block_bytes(f), dec);
        std::memcpy(&staging[static_cast<std::size_t>(r) * spec.cols + blk * blen], dec.codes, blen);
        put_gguf_params(f, gp, static_cast<int>(blk), r, dec);
      }
    }
    write_group_codes(kind, staging.data(), spec.cols, l.nb, base + g * l.code_group_bytes);
  }
  return out;
}

mx::array pack_affine(const MatSpec& spec, const std::uint32_t* w, const std::uint8_t* scales,
                      const std::uint8_t* biases) {
  const int bits = spec.fmt == Fmt::Affine4 ? 4 : 8;
  const Layout l = layout_of(spec.fmt, spec.ptype, spec.group, spec.rows, spec.cols);
  mx::array out = alloc_packed(l);
  std::uint8_t* base = out.data<std::uint8_t>();
  const std::size_t es = param_size(spec.ptype);
  const int ngroups = spec.cols / spec.group;
  const std::size_t words_per_row = static_cast<std::size_t>(spec.cols) * bits / 32;
  std::vector<std::uint8_t> staging(static_cast<std::size_t>(kRows) * spec.cols);
  for (int g = 0; g < l.groups; ++g) {
    std::fill(staging.begin(), staging.end(), 0);
    std::uint8_t* gp = base + l.params_offset + g * l.param_group_bytes;
    for (int r = 0; r < kRows; ++r) {
      const int row = g * kRows + r;
      if (row >= spec.rows) break;
      const std::uint32_t* wr = w + row * words_per_row;
      std::uint8_t* st = &staging[static_cast<std::size_t>(r) * spec.cols];
      for (int k = 0; k < spec.cols; ++k) {
        const std::uint32_t word = wr[static_cast<std::size_t>(k) * bits / 32];
        const unsigned q = (word >> ((k * bits) % 32)) & ((1u << bits) - 1);
        // 8-bit codes are stored signed (q - 128) like Q8_0's.
        st[k] = static_cast<std::uint8_t>(bits == 8 ? q ^ 0x80u : q);
      }
      for (int j = 0; j < ngroups; ++j) {
        std::uint8_t* p = gp + static_cast<std::size_t>(j) * 32 * es;
        std::memcpy(p + r * es, scales + (static_cast<std::size_t>(row) * ngroups + j) * es, es);
        std::memcpy(p + (16 + r) * es, biases + (static_cast<std::size_t>(row) * ngroups + j) * es, es);
      }
    }
    write_group_codes(code_kind(spec.fmt), staging.data(), spec.cols, l.nb, base + g * l.code_group_bytes);
  }
  return out;
}

void dequantize_rows(const MatView& w, const std::int32_t* ids, std::size_t n, float* out) {
  for (std::size_t i = 0; i < n; ++i) {
    const int row = ids ? ids[i] : static_cast<int>(i);
    const int g = row / kRows, r = row % kRows;
    float* dst = out + i * static_cast<std::size_t>(w.cols);
    for (int b = 0; b < w.nb; ++b) dequantize_row_block(w, g, b, r, dst + b * kBlock);
  }
}

const char* format_name(Fmt f) {
  switch (f) {
    case Fmt::Q8_0: return "Q8_0";
    case Fmt::Q4_0: return "Q4_0";
    case Fmt::Q4_1: return "Q4_1";
    case Fmt::Q5_0: return "Q5_0";
    case Fmt::Q5_1: return "Q5_1";
    case Fmt::Q4K: return "Q4_K";
    case Fmt::Q5K: return "Q5_K";
    case Fmt::Q6K: return "Q6_K";
    case Fmt::Affine4: return "affine4";
    case Fmt::Affine8: return "affine8";
  }
  return "?";
}

}  // namespace mlxcel::bq
