// The attention kernels of kernels/attention.cu (flash, reference, CLS-only; flash and CLS
// at head_dim 64 and 32) run on the CPU emulator against an f64 softmax(QK^T * scale) V over
// packed varlen sequences.
//
// Cases: lengths around the 64-row tile edges (1, 63, 64, 65, 129, 200) and a key that
// dominates a later tile (the online-softmax rescale), each at head_dim 64 and 32. ctx starts as NaN, so an unwritten row
// or a write into a neighbouring sequence shows up. Pass: every error within fp16 output
// rounding (flash no worse than the plain reference kernel, plus a small margin).
#include "attention.cu"

#include <random>

struct Case {
    const char* name;
    std::vector<int> lens;
    int heads;
    float sd;         // std of the random q/k/v entries
    int spike_token;  // a token whose key (head 1) is scaled up 8x, or -1
    int head_dim;     // 64 or 32: picks the flash / CLS instantiation
};

static bool run_case(const Case& c) {
    const int D = c.head_dim, H = c.heads * D;
    std::vector<int> cu = {0};
    for (int l : c.lens) cu.push_back(cu.back() + l);
    const int n = cu.back(), S = (int)c.lens.size();
    const int max_len = *std::max_element(c.lens.begin(), c.lens.end());
    std::mt19937 rng(1);
    std::normal_distribution<float> normal(0, c.sd);
    std::vector<cr_half> qkv((size_t)n * 3 * H);
    for (auto& x : qkv) x = cr_float_to_half(normal(rng));
    if (c.spike_token >= 0 && c.heads > 1) {
        for (int e = 0; e < D; ++e) {
            cr_half& k = qkv[(size_t)c.spike_token * 3 * H + H + D + e];
            k = cr_float_to_half(8.0f * cr_half_to_float(k));
        }
    }
    const cr_half nan = 0x7e00;
    std::vector<cr_half> ctx_flash((size_t)n * H, nan), ctx_ref((size_t)n * H, nan), ctx_cls((size_t)S * H, nan);
    const float scale = 1.0f / sqrtf((float)D);
    auto flash = D == 64 ? attention_varlen_flash : attention_varlen_flash_d32;
    auto cls = D == 64 ? attention_varlen_cls : attention_varlen_cls_d32;
    launch({(unsigned)((max_len + 63) / 64), (unsigned)c.heads, (unsigned)S}, {128},
           [&] { flash(qkv.data(), ctx_flash.data(), cu.data(), c.heads, scale); });
    launch({(unsigned)n, (unsigned)c.heads, 1}, {128},
           [&] { attention_varlen_reference(qkv.data(), ctx_ref.data(), cu.data(), S, c.heads, D, scale); });
    launch({(unsigned)S, (unsigned)c.heads, 1}, {128},
           [&] { cls(qkv.data(), ctx_cls.data(), cu.data(), c.heads, scale); });

    auto at = [&](int t, int col) { return (double)cr_half_to_float(qkv[(size_t)t * 3 * H + col]); };
    double err_flash = 0, err_ref = 0, err_cls = 0, max_out = 0;
    int bad = 0;
    for (int s = 0; s < S; ++s) {
        for (int h = 0; h < c.heads; ++h) {
            for (int i = cu[s]; i < cu[s + 1]; ++i) {
                std::vector<double> p(c.lens[s]);
                double m = -1e300;
                for (int k = 0; k < c.lens[s]; ++k) {
                    double dot = 0;
                    for (int e = 0; e < D; ++e) dot += at(i, h * D + e) * at(cu[s] + k, H + h * D + e);
                    p[k] = dot * scale;
                    m = std::max(m, p[k]);
                }
                double l = 0;
                for (auto& x : p) l += (x = exp(x - m));
                for (int e = 0; e < D; ++e) {
                    double want = 0;
                    for (int k = 0; k < c.lens[s]; ++k) want += p[k] * at(cu[s] + k, 2 * H + h * D + e);
                    want /= l;
                    max_out = std::max(max_out, fabs(want));
                    const size_t o = (size_t)i * H + h * D + e;
                    const double f = cr_half_to_float(ctx_flash[o]), r = cr_half_to_float(ctx_ref[o]);
                    if (!std::isfinite(f) || !std::isfinite(r)) {
                        if (bad++ < 5)
                            printf("  %s: seq %d head %d token %d dim %d: flash %g reference %g (unwritten?)\n", c.name,
                                   s, h, i, e, f, r);
                        continue;
                    }
                    err_flash = std::max(err_flash, fabs(f - want));
                    err_ref = std::max(err_ref, fabs(r - want));
                    if (i == cu[s]) {
                        const double got = cr_half_to_float(ctx_cls[(size_t)s * H + h * D + e]);
                        err_cls = std::max(err_cls, std::isfinite(got) ? fabs(got - want) : 1e30);
                    }
                }
            }
        }
    }
    // fp16 output: half an ulp of the largest output, twice for the two roundings inside.
    const double fp16_tol = std::max(max_out, 1.0) * 2e-3;
    const bool ok = bad == 0 && err_ref <= fp16_tol && err_cls <= fp16_tol && err_flash <= 1.5 * err_ref + 1e-3;
    printf("%-28s D=%d max|err| flash %.3g reference %.3g cls %.3g (max|out| %.3g, tolerance %.3g) %s\n", c.name, D, err_flash,
           err_ref, err_cls, max_out, fp16_tol, ok ? "ok" : "FAILED");
    return ok;
}

int main() {
    const Case cases[] = {
        {"tile edges, 2 heads", {1, 40, 63, 64, 65, 130, 7, 200}, 2, 1.5f, -1, 64},
        {"dominant key in tile 2", {128, 3, 129}, 3, 3.0f, 128 + 3 + 120, 64},
        {"tile edges, 2 heads", {1, 40, 63, 64, 65, 130, 7, 200}, 2, 1.5f, -1, 32},
        {"dominant key in tile 2", {128, 3, 129}, 3, 3.0f, 128 + 3 + 120, 32},
    };
    bool ok = true;
    for (const Case& c : cases) ok &= run_case(c);
    return ok ? 0 : 1;
}
