// The non-attention kernels of kernels/ run on the CPU emulator against f64 references:
// QKV bias + RoPE (rope.cu), residual + LayerNorm, in place and on gathered rows
// (layernorm.cu), embedding + LayerNorm with an out-of-range id, and its absolute-position +
// segment variant with out-of-range ids, positions and types (embedding.cu), gated GELU
// (gated_gelu.cu), the bias epilogues add_bias_rows and bias_gelu (bias.cu) and the fp32 CLS
// pooler + classifier head (head.cu).
// Pass: fp16 outputs within a couple of fp16 ulps, the fp32 head within 1e-4.
#include "bias.cu"
#include "embedding.cu"
#include "gated_gelu.cu"
#include "head.cu"
#include "layernorm.cu"
#include "rope.cu"

#include <random>

static std::mt19937 rng(2);
static std::normal_distribution<float> normal(0, 1);
static bool all_ok = true;

static void report(const char* what, double err, double tol) {
    const bool ok = err <= tol;
    all_ok &= ok;
    printf("%-34s max|err| %.3g (tolerance %.3g) %s\n", what, err, tol, ok ? "ok" : "FAILED");
}

static double h2d(cr_half h) { return cr_half_to_float(h); }

static void check_rope() {
    const int n = 5, D = 64, heads = 3, H = heads * D;
    std::vector<cr_half> qkv(n * 3 * H);
    for (auto& x : qkv) x = cr_float_to_half(normal(rng));
    const auto before = qkv;
    std::vector<float> bias(3 * H);
    for (auto& x : bias) x = normal(rng);
    std::vector<unsigned> pos = {0, 1, 2, 700, 8191};
    std::vector<float> inv_freq(D / 2);  // NTK-scaled base 20000 * 8^(64/62), as in the spec
    for (int j = 0; j < D / 2; ++j) inv_freq[j] = pow(8.0, -1.0 / 32) * pow(160000.0, -j / 32.0);
    launch({2}, {256}, [&] { qkv_bias_rope(qkv.data(), bias.data(), pos.data(), inv_freq.data(), n, H, D); });
    double err = 0;
    for (int t = 0; t < n; ++t) {
        for (int c = 0; c < 3 * H; ++c) {
            const int block = c / H, j = c % H % D, head_base = c - j, jj = j % (D / 2);
            const double z = h2d(before[t * 3 * H + c]) + bias[c];
            double want = z;
            if (block < 2) {  // q and k rotate (rotate-half pairs j and j + D/2); v gets bias only
                const double a = (double)pos[t] * inv_freq[jj];
                const double lo = h2d(before[t * 3 * H + head_base + jj]) + bias[head_base + jj];
                const double hi = h2d(before[t * 3 * H + head_base + jj + D / 2]) + bias[head_base + jj + D / 2];
                want = j < D / 2 ? lo * cos(a) - hi * sin(a) : hi * cos(a) + lo * sin(a);
            }
            err = std::max(err, fabs(want - h2d(qkv[t * 3 * H + c])));
        }
    }
    // fp32 angles at position 8191 are off by ~7e-4 rad (as in torch); values are ~3.
    report("qkv_bias_rope (positions to 8191)", err, 5e-3);
}

static std::vector<double> layer_norm(const std::vector<double>& v, const std::vector<float>& gamma,
                                      const std::vector<float>& beta) {
    const size_t H = v.size();
    double mean = 0, var = 0;
    for (double a : v) mean += a;
    mean /= H;
    for (double a : v) var += (a - mean) * (a - mean);
    var /= H;
    std::vector<double> out(H);
    for (size_t i = 0; i < H; ++i) out[i] = (v[i] - mean) / sqrt(var + 1e-12) * gamma[i] + beta[i];
    return out;
}

static void check_layernorm_and_embedding() {
    const int n = 9, H = 768;
    std::vector<cr_half> x(n * H), y(n * H);
    for (auto& v : x) v = cr_float_to_half(normal(rng) * 3);
    for (auto& v : y) v = cr_float_to_half(normal(rng));
    std::vector<float> bias(H), gamma(H), beta(H);
    for (int i = 0; i < H; ++i) {
        bias[i] = normal(rng);
        gamma[i] = 1 + 0.1f * normal(rng);
        beta[i] = 0.1f * normal(rng);
    }
    const auto x_before = x;
    std::vector<int> rows = {0, 3, 8};
    std::vector<cr_half> gathered(rows.size() * H);
    launch({1}, {128}, [&] {
        bias_residual_layernorm_rows(x.data(), rows.data(), y.data(), bias.data(), gamma.data(), beta.data(),
                                     gathered.data(), (int)rows.size(), H, 1e-12f);
    });
    launch({2}, {128},
           [&] { bias_residual_layernorm(x.data(), y.data(), bias.data(), gamma.data(), beta.data(), n, H, 1e-12f); });
    double err_all = 0, err_rows = 0;
    for (int r = 0; r < n; ++r) {
        std::vector<double> v(H);
        for (int i = 0; i < H; ++i) v[i] = h2d(x_before[r * H + i]) + h2d(y[r * H + i]) + bias[i];
        const auto want = layer_norm(v, gamma, beta);
        for (int i = 0; i < H; ++i) err_all = std::max(err_all, fabs(want[i] - h2d(x[r * H + i])));
    }
    for (size_t k = 0; k < rows.size(); ++k) {
        std::vector<double> v(H);
        for (int i = 0; i < H; ++i) v[i] = h2d(x_before[rows[k] * H + i]) + h2d(y[k * H + i]) + bias[i];
        const auto want = layer_norm(v, gamma, beta);
        for (int i = 0; i < H; ++i) err_rows = std::max(err_rows, fabs(want[i] - h2d(gathered[k * H + i])));
    }
    report("bias_residual_layernorm", err_all, 4e-3);
    report("bias_residual_layernorm_rows", err_rows, 4e-3);

    const int vocab = 50;
    std::vector<cr_half> word(vocab * H), type_row(H);
    for (auto& v : word) v = cr_float_to_half(normal(rng));
    for (auto& v : type_row) v = cr_float_to_half(normal(rng));
    std::vector<unsigned> ids = {0, 49, 7, 50, 3};  // 50 is out of range: zero word row, flag set
    std::vector<cr_half> out(ids.size() * H);
    int flag = 0;
    launch({1}, {128}, [&] {
        embedding_layernorm(ids.data(), word.data(), type_row.data(), gamma.data(), beta.data(), out.data(),
                            (int)ids.size(), H, vocab, 1e-12f, &flag);
    });
    double err = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
        std::vector<double> v(H);
        for (int i = 0; i < H; ++i) v[i] = (ids[t] < (unsigned)vocab ? h2d(word[ids[t] * H + i]) : 0.0) + h2d(type_row[i]);
        const auto want = layer_norm(v, gamma, beta);
        for (int i = 0; i < H; ++i) err = std::max(err, fabs(want[i] - h2d(out[t * H + i])));
    }
    report("embedding_layernorm", err, 4e-3);
    report("embedding_layernorm out-of-range flag", flag == 1 ? 0.0 : 1.0, 0.0);
}

// Absolute-position embedding (BERT / XLM-R): word + (position + type) rows, then LayerNorm, at
// hidden sizes whose chunk count is not a multiple of 32 (96: 12 chunks, 384: 48). The last
// tokens carry an out-of-range id, position and type (each row read as zeros, flag bits 1, 2, 4).
static void check_embedding_abs() {
    for (int H : {96, 384}) {
        const unsigned vocab = 40, n_pos = 300, n_types = 2;
        std::vector<cr_half> word(vocab * H), pos_emb(n_pos * H), type_emb(n_types * H);
        for (auto& v : word) v = cr_float_to_half(normal(rng));
        for (auto& v : pos_emb) v = cr_float_to_half(0.5f * normal(rng));
        for (auto& v : type_emb) v = cr_float_to_half(0.3f * normal(rng));
        std::vector<float> gamma(H), beta(H);
        for (int i = 0; i < H; ++i) {
            gamma[i] = 1 + 0.1f * normal(rng);
            beta[i] = 0.1f * normal(rng);
        }
        std::vector<unsigned> ids = {0, 39, 7, 3, 12, 5, 40, 1, 2};
        std::vector<unsigned> pos = {0, 1, 2, 299, 150, 7, 3, 300, 4};
        std::vector<unsigned> types = {0, 0, 1, 1, 0, 1, 0, 1, 2};
        const int n = (int)ids.size(), n_valid = 6;  // tokens 6, 7, 8: bad id, position, type
        std::vector<cr_half> out(n * H);
        int flag = 0;
        launch({2}, {64}, [&] {  // 2 warps per block, 2 blocks: the grid-stride loop runs twice
            embedding_abs_layernorm(ids.data(), pos.data(), types.data(), word.data(), pos_emb.data(),
                                    type_emb.data(), gamma.data(), beta.data(), out.data(), n, H, vocab, n_pos,
                                    n_types, 1e-12f, &flag);
        });
        double err = 0;
        for (int t = 0; t < n; ++t) {
            std::vector<double> v(H);
            for (int i = 0; i < H; ++i) {
                const double w = ids[t] < vocab ? h2d(word[ids[t] * H + i]) : 0.0;
                const double p = pos[t] < n_pos ? h2d(pos_emb[pos[t] * H + i]) : 0.0;
                const double y = types[t] < n_types ? h2d(type_emb[types[t] * H + i]) : 0.0;
                v[i] = w + p + y;
            }
            const auto want = layer_norm(v, gamma, beta);
            for (int i = 0; i < H; ++i) err = std::max(err, fabs(want[i] - h2d(out[t * H + i])));
        }
        char what[64];
        snprintf(what, sizeof what, "embedding_abs_layernorm h=%d", H);
        report(what, err, 4e-3);
        snprintf(what, sizeof what, "embedding_abs_layernorm flags h=%d", H);
        report(what, flag == 7 ? 0.0 : 1.0, 0.0);
        int flag_valid = 0;
        launch({1}, {128}, [&] {
            embedding_abs_layernorm(ids.data(), pos.data(), types.data(), word.data(), pos_emb.data(),
                                    type_emb.data(), gamma.data(), beta.data(), out.data(), n_valid, H, vocab,
                                    n_pos, n_types, 1e-12f, &flag_valid);
        });
        snprintf(what, sizeof what, "embedding_abs_layernorm no flag h=%d", H);
        report(what, flag_valid == 0 ? 0.0 : 1.0, 0.0);
    }
}

// add_bias_rows and bias_gelu: in place on [n, width] fp16 rows; width 72 (9 vectors per row,
// so vectors cross rows within a block) and 3 * 96 (a QKV row); 2 blocks of 32 threads so the
// grid-stride loop wraps.
static void check_bias() {
    for (int width : {72, 288}) {
        const int n = 7;
        std::vector<cr_half> x(n * width);
        for (auto& v : x) v = cr_float_to_half(normal(rng) * 2);
        std::vector<float> bias(width);
        for (auto& v : bias) v = normal(rng);
        auto plus = x, gelu = x;
        launch({2}, {32}, [&] { add_bias_rows(plus.data(), bias.data(), n, width); });
        launch({2}, {32}, [&] { bias_gelu(gelu.data(), bias.data(), n, width); });
        double err_plus = 0, err_gelu = 0, max_out = 0;
        for (int r = 0; r < n; ++r) {
            for (int c = 0; c < width; ++c) {
                const double z = h2d(x[r * width + c]) + bias[c];
                const double g = 0.5 * z * (1 + erf(z / sqrt(2.0)));
                max_out = std::max(max_out, fabs(z));
                err_plus = std::max(err_plus, fabs(z - h2d(plus[r * width + c])));
                err_gelu = std::max(err_gelu, fabs(g - h2d(gelu[r * width + c])));
            }
        }
        char what[64];
        snprintf(what, sizeof what, "add_bias_rows width=%d", width);
        report(what, err_plus, std::max(max_out, 1.0) * 1e-3);
        snprintf(what, sizeof what, "bias_gelu (erf) width=%d", width);
        report(what, err_gelu, std::max(max_out, 1.0) * 1e-3);
    }
}

static void check_gated_gelu() {
    const int n = 3, I = 24;
    std::vector<cr_half> up_gate(n * 2 * I), out(n * I);
    for (auto& v : up_gate) v = cr_float_to_half(normal(rng) * 2);
    launch({1}, {256}, [&] { gated_gelu(up_gate.data(), out.data(), n, I); });
    double err = 0, max_out = 0;
    for (int r = 0; r < n; ++r) {
        for (int i = 0; i < I; ++i) {
            const double up = h2d(up_gate[r * 2 * I + i]), gate = h2d(up_gate[r * 2 * I + I + i]);
            const double want = 0.5 * gate * (1 + erf(gate / sqrt(2.0))) * up;
            max_out = std::max(max_out, fabs(want));
            err = std::max(err, fabs(want - h2d(out[r * I + i])));
        }
    }
    report("gated_gelu (erf)", err, std::max(max_out, 1.0) * 1e-3);
}

static void check_head() {
    const int H = 64, S = 11, n_rows = 30;
    std::vector<cr_half> x(n_rows * H);
    for (auto& v : x) v = cr_float_to_half(normal(rng));
    std::vector<int> cls_rows(S);
    for (int s = 0; s < S; ++s) cls_rows[s] = (s * 7) % n_rows;
    std::vector<float> w_pool(H * H), b_pool(H), w_cls(H), b_cls(1, 0.3f);
    for (auto& v : w_pool) v = 0.1f * normal(rng);
    for (auto& v : b_pool) v = 0.1f * normal(rng);
    for (auto& v : w_cls) v = normal(rng);
    std::vector<float> logits(S), scores(S);
    launch({2}, {256}, [&] {
        cls_pooler_classifier(x.data(), cls_rows.data(), w_pool.data(), b_pool.data(), w_cls.data(), b_cls.data(), 1,
                              logits.data(), scores.data(), S, H);
    });
    double err_logit = 0, err_score = 0;
    for (int s = 0; s < S; ++s) {
        double logit = b_cls[0];
        for (int o = 0; o < H; ++o) {
            double z = b_pool[o];
            for (int i = 0; i < H; ++i) z += w_pool[o * H + i] * h2d(x[cls_rows[s] * H + i]);
            logit += w_cls[o] * tanh(z);
        }
        err_logit = std::max(err_logit, fabs(logit - logits[s]));
        err_score = std::max(err_score, fabs(1 / (1 + exp(-logit)) - scores[s]));
    }
    report("cls_pooler_classifier logit (fp32)", err_logit, 1e-4);
    report("cls_pooler_classifier sigmoid (fp32)", err_score, 1e-5);
}

int main() {
    check_rope();
    check_layernorm_and_embedding();
    check_embedding_abs();
    check_gated_gelu();
    check_bias();
    check_head();
    return all_ok ? 0 : 1;
}
