/* The audit hook's gate, in C: decide whether an audit event needs Python at all.
 *
 * CPython calls every audit hook for every audit event in the process: an open, an
 * import, a sys._getframe. A hook written in Python costs a frame and a str object per
 * event (about 0.3-0.5 us here), which is most of lambdaguard's overhead on an open or a
 * connect outside any scope. This gate is the same hook's first lines in C:
 *
 *   - an event no sensor watches: return at once (one hash, one strcmp);
 *   - a watched event while no policy is in force (the scope ContextVar is None and
 *     lambdaguard.scope._baseline_active is None): return, unless an observer must see
 *     the event anyway (files' memory of link-free paths watches process starts);
 *   - otherwise: call the Python hook, lambdaguard.sensors.audit._hook(event, args),
 *     exactly as sys.addaudithook would have, and pass on what it raises.
 *
 * Everything it decides, the Python hook decides identically (it makes the same two
 * checks first), so the gate changes the cost, never the verdict. Where this file is
 * not compiled, the Python hook is added with sys.addaudithook instead.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define SLOTS 512 /* power of two, well above the ~50 watched event names */

typedef struct {
    char *name;  /* owned copy, or NULL for an empty slot */
    int always;  /* an observer must see it even with no policy in force */
} Slot;

static Slot table[SLOTS];
static PyObject *dispatch = NULL;      /* the Python hook */
static PyObject *scope_var = NULL;     /* lambdaguard.scope._scope */
static PyObject *scope_module = NULL;  /* lambdaguard.scope, for _baseline_active */
static PyObject *baseline_name = NULL; /* interned "_baseline_active" */
static int hook_added = 0;

static size_t
hash_name(const char *s)
{
    size_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static Slot *
find(const char *event)
{
    size_t i = hash_name(event) & (SLOTS - 1);
    for (size_t probes = 0; probes < SLOTS; probes++, i = (i + 1) & (SLOTS - 1)) {
        if (table[i].name == NULL) {
            return NULL;
        }
        if (strcmp(table[i].name, event) == 0) {
            return &table[i];
        }
    }
    return NULL;
}

static int
policy_in_force(void)
{
    /* 1: a scope or a baseline is active; 0: none; -1: error set. */
    PyObject *state = NULL;
    if (PyContextVar_Get(scope_var, Py_None, &state) < 0) {
        return -1;
    }
    int active = state != Py_None;
    Py_XDECREF(state);
    if (active) {
        return 1;
    }
    PyObject *baseline = PyObject_GetAttr(scope_module, baseline_name);
    if (baseline == NULL) {
        return -1;
    }
    active = baseline != Py_None;
    Py_DECREF(baseline);
    return active;
}

static int
gate(const char *event, PyObject *args, void *unused)
{
    if (dispatch == NULL) {
        return 0;
    }
    Slot *slot = find(event);
    if (slot == NULL) {
        return 0;
    }
    if (!slot->always) {
        int in_force = policy_in_force();
        if (in_force <= 0) {
            return in_force; /* 0: nothing to judge; -1: the error propagates */
        }
    }
    PyObject *name = PyUnicode_FromString(event);
    if (name == NULL) {
        return -1;
    }
    PyObject *result = PyObject_CallFunctionObjArgs(dispatch, name, args, NULL);
    Py_DECREF(name);
    if (result == NULL) {
        return -1; /* a Violation: the audited operation fails with it */
    }
    Py_DECREF(result);
    return 0;
}

static void
clear_table(void)
{
    for (size_t i = 0; i < SLOTS; i++) {
        PyMem_Free(table[i].name);
        table[i].name = NULL;
        table[i].always = 0;
    }
}

static int
add_name(PyObject *name, int always)
{
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(name, &size);
    if (text == NULL) {
        return -1;
    }
    size_t i = hash_name(text) & (SLOTS - 1);
    for (size_t probes = 0; probes < SLOTS; probes++, i = (i + 1) & (SLOTS - 1)) {
        if (table[i].name == NULL) {
            char *copy = PyMem_Malloc((size_t)size + 1);
            if (copy == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            memcpy(copy, text, (size_t)size + 1);
            table[i].name = copy;
            table[i].always = always;
            return 0;
        }
        if (strcmp(table[i].name, text) == 0) {
            table[i].always |= always;
            return 0;
        }
    }
    PyErr_SetString(PyExc_ValueError, "lambdaguard._audit_gate: too many watched events");
    return -1;
}

PyDoc_STRVAR(install_doc,
"install(watched, always, hook, scope_var, scope_module)\n\n"
"Watch these event names (an iterable of str; 'always' ones reach the hook even with no\n"
"policy in force) and add the gate as an audit hook, once per process. Called again,\n"
"it replaces the names and keeps the one hook.");

static PyObject *
install(PyObject *module, PyObject *const *argv, Py_ssize_t argc)
{
    if (argc != 5) {
        PyErr_SetString(PyExc_TypeError, "install() takes 5 arguments");
        return NULL;
    }
    PyObject *watched = argv[0], *always = argv[1];
    if (!PyCallable_Check(argv[2])) {
        PyErr_SetString(PyExc_TypeError, "install(): hook must be callable");
        return NULL;
    }
    /* Fill a fresh table; the gate reads it only with the GIL held, as we write it. */
    clear_table();
    PyObject *sets[2] = {watched, always};
    for (int k = 0; k < 2; k++) {
        PyObject *iterator = PyObject_GetIter(sets[k]);
        if (iterator == NULL) {
            clear_table();
            return NULL;
        }
        PyObject *item;
        while ((item = PyIter_Next(iterator)) != NULL) {
            int failed = !PyUnicode_Check(item) || add_name(item, k == 1) < 0;
            if (failed && !PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "install(): event names must be str");
            }
            Py_DECREF(item);
            if (failed) {
                Py_DECREF(iterator);
                clear_table();
                return NULL;
            }
        }
        Py_DECREF(iterator);
        if (PyErr_Occurred()) {
            clear_table();
            return NULL;
        }
    }
    Py_INCREF(argv[2]);
    Py_XSETREF(dispatch, argv[2]);
    Py_INCREF(argv[3]);
    Py_XSETREF(scope_var, argv[3]);
    Py_INCREF(argv[4]);
    Py_XSETREF(scope_module, argv[4]);
    if (baseline_name == NULL) {
        baseline_name = PyUnicode_InternFromString("_baseline_active");
        if (baseline_name == NULL) {
            return NULL;
        }
    }
    if (!hook_added) {
        if (PySys_AddAuditHook(gate, NULL) < 0) {
            return NULL;
        }
        hook_added = 1;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL, install_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "lambdaguard._audit_gate",
    "The audit hook's first lines in C: see lambdaguard/_audit_gate.c.",
    -1, /* process-wide state: an audit hook is process-wide too */
    methods,
};

PyMODINIT_FUNC
PyInit__audit_gate(void)
{
    return PyModule_Create(&module_def);
}
