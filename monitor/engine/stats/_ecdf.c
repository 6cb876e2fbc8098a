/*
 * One linear pass over two sorted, weighted samples.
 *
 * Returns the extremes of F_ref - F_cur and the integrals of |F_ref - F_cur|
 * and (F_ref - F_cur)^2 over the real line, which give the two-sample KS
 * statistic, the 1-Wasserstein distance and the energy distance.  numpy can
 * only do this through a sort or a binary search per value; a merge of two
 * sorted arrays is linear and allocation-free.
 *
 * A merge is a chain of dependent steps (which side is next depends on the
 * previous step), so one merge runs at the latency of a load plus a compare
 * per element.  The support is therefore cut at CHAINS reference quantiles
 * into independent merges that are stepped in lock-step, which lets the CPU
 * overlap them; the pieces are summed at the end.
 *
 * Inputs are read through the buffer protocol as contiguous float64 arrays:
 * (ref_values, ref_weights, cur_values, cur_weights).  An empty weights
 * buffer means every value has weight one.  Values must be ascending and
 * finite; the Python wrapper guarantees that.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

#define CHAINS 4

typedef struct {
    Py_ssize_t i, iend, j, jend;
    double sr, sc, diff, prev, w1, l2, d_plus, d_minus;
} chain_t;

typedef struct {
    const double *rv, *rw, *cv, *cw;
    int r_unit, c_unit;
    double ir, ic;
} input_t;

static inline void account(chain_t *s, double z) {
    /* The state before this step is a real ECDF point only once every copy of
     * the previous value has been consumed, i.e. when z is larger. */
    double dz = z - s->prev;
    double point = (double)(dz > 0.0);
    s->w1 += fabs(s->diff) * dz;
    s->l2 += s->diff * s->diff * dz;
    double u = s->diff * point, v = -s->diff * point;
    s->d_plus = u > s->d_plus ? u : s->d_plus;
    s->d_minus = v > s->d_minus ? v : s->d_minus;
    s->prev = z;
}

/* one element from whichever side is smaller; both sides must be non-empty */
static inline void step_both(chain_t *s, const input_t *in) {
    double a = in->rv[s->i], c = in->cv[s->j];
    int t = a <= c;  /* an int keeps the index update off the FP path */
    double take = (double)t;
    double z = t ? a : c;
    account(s, z);
    double wr = in->r_unit ? 1.0 : in->rw[s->i];
    double wc = in->c_unit ? 1.0 : in->cw[s->j];
    s->sr += take * wr;
    s->sc += (1.0 - take) * wc;
    s->diff = s->sr * in->ir - s->sc * in->ic;
    s->i += t;
    s->j += 1 - t;
}

static void finish(chain_t *s, const input_t *in) {
    while (s->i < s->iend && s->j < s->jend) step_both(s, in);
    for (; s->i < s->iend; s->i++) {
        account(s, in->rv[s->i]);
        s->sr += in->r_unit ? 1.0 : in->rw[s->i];
        s->diff = s->sr * in->ir - s->sc * in->ic;
    }
    for (; s->j < s->jend; s->j++) {
        account(s, in->cv[s->j]);
        s->sc += in->c_unit ? 1.0 : in->cw[s->j];
        s->diff = s->sr * in->ir - s->sc * in->ic;
    }
}

static Py_ssize_t lower_bound(const double *x, Py_ssize_t n, double v) {
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (x[mid] < v) lo = mid + 1; else hi = mid;
    }
    return lo;
}

static int get_doubles(PyObject *obj, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != sizeof(double) || view->format == NULL || strcmp(view->format, "d") != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "expected a contiguous float64 buffer");
        return -1;
    }
    return 0;
}

static PyObject *compare(PyObject *self, PyObject *args) {
    PyObject *o[4];
    Py_buffer b[4];
    int got = 0;
    if (!PyArg_ParseTuple(args, "OOOO", &o[0], &o[1], &o[2], &o[3])) return NULL;
    for (got = 0; got < 4; got++) {
        if (get_doubles(o[got], &b[got]) < 0) goto fail;
    }
    {
        input_t in;
        in.rv = (const double *)b[0].buf; in.rw = (const double *)b[1].buf;
        in.cv = (const double *)b[2].buf; in.cw = (const double *)b[3].buf;
        Py_ssize_t nr = b[0].len / 8, nc = b[2].len / 8;
        in.r_unit = b[1].len == 0; in.c_unit = b[3].len == 0;
        if ((!in.r_unit && b[1].len != b[0].len) || (!in.c_unit && b[3].len != b[2].len)) {
            PyErr_SetString(PyExc_ValueError, "weights must match values in length");
            goto fail;
        }
        if (nr == 0 || nc == 0) {
            PyErr_SetString(PyExc_ValueError, "cannot compare an empty sample");
            goto fail;
        }
        double d_plus = 0.0, d_minus = 0.0, w1 = 0.0, l2 = 0.0, last = 0.0;
        Py_BEGIN_ALLOW_THREADS
        double tr = 0.0, tc = 0.0;
        Py_ssize_t k;
        if (in.r_unit) tr = (double)nr; else for (k = 0; k < nr; k++) tr += in.rw[k];
        if (in.c_unit) tc = (double)nc; else for (k = 0; k < nc; k++) tc += in.cw[k];
        in.ir = 1.0 / tr;
        in.ic = 1.0 / tc;

        /* cut points: CHAINS reference quantiles; chain c covers [v_c, v_{c+1}) */
        chain_t ch[CHAINS];
        Py_ssize_t ri[CHAINS + 1], ci[CHAINS + 1];
        ri[0] = 0; ci[0] = 0; ri[CHAINS] = nr; ci[CHAINS] = nc;
        for (int c = 1; c < CHAINS; c++) {
            double v = in.rv[(nr * c) / CHAINS];
            ri[c] = lower_bound(in.rv, nr, v);
            ci[c] = lower_bound(in.cv, nc, v);
            if (ri[c] < ri[c - 1]) ri[c] = ri[c - 1];
            if (ci[c] < ci[c - 1]) ci[c] = ci[c - 1];
        }
        double sr0 = 0.0, sc0 = 0.0;
        for (int c = 0; c < CHAINS; c++) {
            chain_t *s = &ch[c];
            memset(s, 0, sizeof(*s));
            s->i = ri[c]; s->iend = ri[c + 1]; s->j = ci[c]; s->jend = ci[c + 1];
            /* cumulative weights before the chain's first value */
            if (c > 0) {
                if (in.r_unit) sr0 = (double)ri[c];
                else for (k = ri[c - 1]; k < ri[c]; k++) sr0 += in.rw[k];
                if (in.c_unit) sc0 = (double)ci[c];
                else for (k = ci[c - 1]; k < ci[c]; k++) sc0 += in.cw[k];
            }
            s->sr = sr0; s->sc = sc0;
            s->diff = sr0 * in.ir - sc0 * in.ic;
            /* the largest value before the chain: the previous ECDF point */
            int have = 0;
            double prev = 0.0;
            if (s->i > 0) { prev = in.rv[s->i - 1]; have = 1; }
            if (s->j > 0 && (!have || in.cv[s->j - 1] > prev)) { prev = in.cv[s->j - 1]; have = 1; }
            if (!have) {
                double a = s->i < s->iend ? in.rv[s->i] : HUGE_VAL;
                double cc = s->j < s->jend ? in.cv[s->j] : HUGE_VAL;
                prev = a < cc ? a : cc;
            }
            s->prev = prev;
        }
        /* lock-step while every chain has both sides left */
        for (;;) {
            int all = 1;
            for (int c = 0; c < CHAINS; c++)
                all &= (ch[c].i < ch[c].iend) & (ch[c].j < ch[c].jend);
            if (!all) break;
            for (int n = 0; n < 64; n++) {
                int ok = 1;
                for (int c = 0; c < CHAINS; c++)
                    ok &= (ch[c].i < ch[c].iend) & (ch[c].j < ch[c].jend);
                if (!ok) break;
                for (int c = 0; c < CHAINS; c++) step_both(&ch[c], &in);
            }
        }
        for (int c = 0; c < CHAINS; c++) {
            finish(&ch[c], &in);
            w1 += ch[c].w1;
            l2 += ch[c].l2;
            if (ch[c].d_plus > d_plus) d_plus = ch[c].d_plus;
            if (ch[c].d_minus > d_minus) d_minus = ch[c].d_minus;
        }
        /* the state after the last value (both CDFs at 1) is a real point too */
        last = ch[CHAINS - 1].diff;
        if (ri[CHAINS - 1] == nr && ci[CHAINS - 1] == nc) {
            /* trailing chains were empty: the last real state is earlier */
            for (int c = CHAINS - 1; c >= 0; c--) {
                if (ch[c].iend > ri[c] || ch[c].jend > ci[c]) { last = ch[c].diff; break; }
            }
        }
        if (last > d_plus) d_plus = last;
        if (-last > d_minus) d_minus = -last;
        Py_END_ALLOW_THREADS
        for (got = 3; got >= 0; got--) PyBuffer_Release(&b[got]);
        return Py_BuildValue("dddd", d_plus, d_minus, w1, l2);
    }
fail:
    while (--got >= 0) PyBuffer_Release(&b[got]);
    return NULL;
}

static PyMethodDef methods[] = {
    {"compare", compare, METH_VARARGS,
     "compare(ref_values, ref_weights, cur_values, cur_weights) -> "
     "(d_plus, d_minus, w1, l2): sup(F_ref-F_cur), sup(F_cur-F_ref), "
     "integral |F_ref-F_cur|, integral (F_ref-F_cur)^2."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ecdf", NULL, -1, methods};

PyMODINIT_FUNC PyInit__ecdf(void) { return PyModule_Create(&module); }
