/*
 * One linear pass over two sorted, weighted samples.
 *
 * Returns the extremes of F_ref - F_cur and the integrals of |F_ref - F_cur|
 * and (F_ref - F_cur)^2 over the real line, which give the two-sample KS
 * statistic, the 1-Wasserstein distance and the energy distance.  numpy can
 * only do this through a sort or a binary search per value; a merge of two
 * sorted arrays is linear and allocation-free, which is what makes a 100k-row
 * window cost about as much as sorting it.
 *
 * Inputs are read through the buffer protocol as contiguous float64 arrays:
 * (ref_values, ref_weights, cur_values, cur_weights).  An empty weights
 * buffer means every value has weight one.  Values must be ascending and
 * finite; the Python wrapper guarantees that.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

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
        const double *rv = (const double *)b[0].buf, *rw = (const double *)b[1].buf;
        const double *cv = (const double *)b[2].buf, *cw = (const double *)b[3].buf;
        Py_ssize_t nr = b[0].len / 8, nc = b[2].len / 8;
        int r_unit = b[1].len == 0, c_unit = b[3].len == 0;
        if ((!r_unit && b[1].len != b[0].len) || (!c_unit && b[3].len != b[2].len)) {
            PyErr_SetString(PyExc_ValueError, "weights must match values in length");
            goto fail;
        }
        if (nr == 0 || nc == 0) {
            PyErr_SetString(PyExc_ValueError, "cannot compare an empty sample");
            goto fail;
        }
        double tr = 0.0, tc = 0.0;
        Py_ssize_t i, j;
        if (r_unit) tr = (double)nr; else for (i = 0; i < nr; i++) tr += rw[i];
        if (c_unit) tc = (double)nc; else for (j = 0; j < nc; j++) tc += cw[j];
        double sr = 0.0, sc = 0.0;          /* cumulative weights so far */
        double d_plus = 0.0, d_minus = 0.0;  /* max of F_ref - F_cur and of F_cur - F_ref */
        double w1 = 0.0, l2 = 0.0, diff = 0.0;
        Py_BEGIN_ALLOW_THREADS
        /* Consume one element per step, written so the compiler can use
         * conditional moves: with two interleaved random samples every
         * if/else here would be a coin flip for the branch predictor.  The
         * state after a step is a real ECDF point only once all copies of a
         * value are consumed, i.e. when the next value is larger (dz > 0);
         * the extremes are only taken there, so ties are handled exactly.
         * Multiplying by inverses avoids a division per step. */
        const double ir = 1.0 / tr, ic = 1.0 / tc;
        double prev = rv[0] < cv[0] ? rv[0] : cv[0];
        i = 0; j = 0;
#define DL_STEP(Z, WR, WC)                                  \
        {                                                   \
            double dz = (Z) - prev;                         \
            double point = (double)(dz > 0.0);              \
            w1 += fabs(diff) * dz;                          \
            l2 += diff * diff * dz;                         \
            { double u = diff * point; d_plus = u > d_plus ? u : d_plus; }     \
            { double v = -diff * point; d_minus = v > d_minus ? v : d_minus; } \
            sr += (WR);                                     \
            sc += (WC);                                     \
            diff = sr * ir - sc * ic;                       \
            prev = (Z);                                     \
        }
        while (i < nr && j < nc) {
            double a = rv[i], c = cv[j];
            int t = a <= c;  /* an int keeps the index update off the FP path */
            double take = (double)t;
            double z = a <= c ? a : c;
            double wr = r_unit ? 1.0 : rw[i];
            double wc = c_unit ? 1.0 : cw[j];
            DL_STEP(z, take * wr, (1.0 - take) * wc)
            i += t;
            j += 1 - t;
        }
        for (; i < nr; i++) DL_STEP(rv[i], r_unit ? 1.0 : rw[i], 0.0)
        for (; j < nc; j++) DL_STEP(cv[j], 0.0, c_unit ? 1.0 : cw[j])
#undef DL_STEP
        /* the last state (both CDFs at 1) is a real point too */
        if (diff > d_plus) d_plus = diff;
        if (-diff > d_minus) d_minus = -diff;
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
