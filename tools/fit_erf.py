"""Fits the rational erf approximation used by the CPU reference GELU (src/model/cpu.rs).

erf(x) ~ x * P(x^2) / Q(x^2) on [0, 3.92] (erf rounds to 1.0f beyond), by iterated weighted
linear least squares (Sanathanan-Koerner with a reweighting towards equal ripple). Evaluated
in f64 and rounded once to f32, the 7/5 fit is within 0.54 ulp of the correctly rounded erf
over [-5, 5]: as accurate as a libm erff, but branch-free, so the GELU loop vectorizes.

    python tools/fit_erf.py 7 5     # needs numpy; prints the coefficients and the errors
"""
import numpy as np, math, sys
XMAX = 3.92  # erf(x) rounds to 1.0f beyond ~3.92
NP, NQ = int(sys.argv[1]), int(sys.argv[2])
x = np.concatenate([np.linspace(0, XMAX, 20000), np.linspace(0, 0.5, 5000)])
f = np.array([math.erf(v) for v in x])
t = x * x
q_prev = np.ones_like(x)
w_extra = np.ones_like(x)
for it in range(60):
    # unknowns: p0..p_{NP-1}, q1..q_{NQ} (q0 = 1)
    A = np.concatenate([np.stack([x * t**i for i in range(NP)], 1),
                        np.stack([-f * t**j for j in range(1, NQ + 1)], 1)], 1)
    b = f
    # relative error weighting (erf ~ x near 0)
    w = w_extra / (q_prev * np.maximum(np.abs(f), 1e-3))
    sol, *_ = np.linalg.lstsq(A * w[:, None], b * w, rcond=None)
    p, q = sol[:NP], np.concatenate([[1.0], sol[NP:]])
    Q = sum(q[j] * t**j for j in range(NQ + 1))
    P = sum(p[i] * t**i for i in range(NP))
    approx = x * P / Q
    rel = np.abs(approx - f) / np.maximum(np.abs(f), 1e-30)
    q_prev = Q
    w_extra = w_extra * (1 + 2 * rel / rel.max())  # push towards equioscillation
print("max rel (f64 eval):", rel.max())
# float32 evaluation, Horner, as the Rust code will do
p32, q32 = p.astype(np.float32), q.astype(np.float32)
xs = np.linspace(-5, 5, 2_000_001).astype(np.float32)
xc = np.clip(xs, np.float32(-XMAX), np.float32(XMAX))
t32 = xc * xc
P32 = np.zeros_like(t32); 
for c in p32[::-1]: P32 = P32 * t32 + c
Q32 = np.zeros_like(t32)
for c in q32[::-1]: Q32 = Q32 * t32 + c
r = (xc * P32 / Q32).astype(np.float32)
r = np.clip(r, np.float32(-1), np.float32(1))
ref = np.array([math.erf(float(v)) for v in xs])
err = np.abs(r.astype(np.float64) - ref)
ulp = err / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
print("f32: max abs err", err.max(), "max ulp", ulp[np.abs(ref) > 1e-30].max())
# gelu check
g = 0.5 * xs.astype(np.float64) * (1 + r.astype(np.float64))
gref = 0.5 * xs.astype(np.float64) * (1 + ref)
print("gelu max abs err", np.abs(g - gref).max())
print("P =", [float(v) for v in p32])
print("Q =", [float(v) for v in q32])
# float64 evaluation of the same fit, rounded once to f32
xc64 = np.clip(xs.astype(np.float64), -XMAX, XMAX); t64 = xc64 * xc64
P64 = np.zeros_like(t64)
for c in p[::-1]: P64 = P64 * t64 + c
Q64 = np.zeros_like(t64)
for c in q[::-1]: Q64 = Q64 * t64 + c
r64 = np.clip(xc64 * P64 / Q64, -1, 1).astype(np.float32)
err = np.abs(r64.astype(np.float64) - ref)
ulp = err / np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
print("f64-eval: max abs err", err.max(), "max ulp", ulp[np.abs(ref) > 1e-30].max())
print("P64 =", [repr(float(v)) for v in p])
print("Q64 =", [repr(float(v)) for v in q])
