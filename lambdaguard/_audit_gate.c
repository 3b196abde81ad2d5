/* The audit hook's gate, in C: decide whether an audit event needs Python at all.
 *
 * CPython calls every audit hook for every audit event in the process: an open, an
 * import, a sys._getframe. A hook written in Python costs a frame and a str object per
 * event (about 0.3-0.5 us here), which is most of lambdaguard's overhead on an open or a
 * connect. This gate is the same hook's first lines in C:
 *
 *   1. an event no sensor watches: return at once (one hash, one strcmp);
 *   2. an event an observer must see (files' memory of link-free paths watches process
 *      starts): call the Python hook;
 *   3. the policy in force, found exactly as lambdaguard.scope.current() finds it: the
 *      scope ContextVar's ScopeState and its cached view, or scope._baseline_active with
 *      no scope. None: return, nothing can object. A view that the state has not cached
 *      for the current baseline: call the Python hook, which merges it;
 *   4. an operation these rules allowed before (the event's allow memo, below): return;
 *   5. otherwise: call the Python hook, lambdaguard.sensors.audit._hook(event, args),
 *      exactly as sys.addaudithook would have, and pass on what it raises.
 *
 * The Python hook makes the same checks in the same order (audit.py: observers, view,
 * known-allowed memo, then the thread's marks), so the gate changes the cost, never the
 * verdict. Step 4 is a second implementation of the sensors' ``AUDIT_KNOWN_ALLOWED``
 * readers; it only ever answers "allowed before" when the Python reader would, and it
 * reads nothing but exact built-in types (str, int, tuple, dict, None), so no user code
 * runs inside it (no __hash__, __eq__, property or __fspath__ of anyone's). Anything it
 * is unsure of goes to Python. The memo shapes it knows:
 *
 *   open     files' remembered opens: the namespace's tuple (view, {args: stamp}); args
 *            is (str path, str or None mode, int flags). A stamp of None is allowed; a
 *            stamp (st_dev, st_ino, st_ctime_ns) is allowed when stat(path) still finds
 *            that very file (sensors/files.py, _settled_open).
 *   address  network's remembered connects: (action, real family, (str host, int port))
 *            in the view's ``allowed`` dict, the family read with the socket type's own
 *            member descriptor (sensors/network.py, _known_allowed_address).
 *   lookup   network's remembered lookups: (tag, str host) in ``allowed``
 *            (sensors/network.py, _known_allowed_lookup).
 *
 * Where this file is not compiled, the Python hook is added with sys.addaudithook.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#define SLOTS 512 /* power of two, well above the ~50 watched event names */

enum memo_kind { MEMO_NONE = 0, MEMO_OPEN, MEMO_ADDRESS, MEMO_LOOKUP };

typedef struct {
    char *name;       /* owned copy, or NULL for an empty slot */
    int always;       /* an observer must see it even with no policy in force */
    int memo;         /* enum memo_kind */
    PyObject *memo_a; /* open: the namespace dict; address, lookup: the key's tag (str) */
    PyObject *memo_b; /* open: the name of the (view, memo) tuple; address: the family descriptor */
} Slot;

static Slot *table = NULL;             /* SLOTS entries once installed */
static PyObject *dispatch = NULL;      /* the Python hook */
static PyObject *scope_var = NULL;     /* lambdaguard.scope._scope */
static PyObject *scope_dict = NULL;    /* lambdaguard.scope.__dict__ */
static PyObject *s_baseline_active = NULL;  /* interned names */
static PyObject *s_baseline_version = NULL;
static PyObject *s_active = NULL;
static PyObject *s_version = NULL;
static PyObject *s_allowed = NULL;
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
find(Slot *slots, const char *event)
{
    if (slots == NULL) {
        return NULL;
    }
    size_t i = hash_name(event) & (SLOTS - 1);
    for (size_t probes = 0; probes < SLOTS; probes++, i = (i + 1) & (SLOTS - 1)) {
        if (slots[i].name == NULL) {
            return NULL;
        }
        if (strcmp(slots[i].name, event) == 0) {
            return &slots[i];
        }
    }
    return NULL;
}

/* ---- the view in force ------------------------------------------------------------- */

enum { VIEW_NONE = 0, VIEW_FOUND = 1, VIEW_ASK_PYTHON = 2 };

static PyObject *
read_slot(PyObject *obj, PyObject *name)
{
    /* A ScopeState attribute (a slot of our own class), or NULL with no error set. */
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        PyErr_Clear();
    }
    return value;
}

static int
view_in_force(PyObject **view)
{
    /* scope.current() in C. VIEW_FOUND: *view is a new reference to the Active view.
     * VIEW_NONE: no policy in force. VIEW_ASK_PYTHON: let the Python hook find it (a
     * state whose cached view predates the baseline, or anything unexpected). -1: error.
     */
    *view = NULL;
    PyObject *state = NULL;
    if (PyContextVar_Get(scope_var, Py_None, &state) < 0) {
        return -1;
    }
    if (state == Py_None) {
        Py_DECREF(state);
        PyObject *baseline = PyDict_GetItemWithError(scope_dict, s_baseline_active);
        if (baseline == NULL) {
            return PyErr_Occurred() ? -1 : VIEW_ASK_PYTHON;
        }
        if (baseline == Py_None) {
            return VIEW_NONE;
        }
        Py_INCREF(baseline);
        *view = baseline;
        return VIEW_FOUND;
    }
    int outcome = VIEW_ASK_PYTHON;
    PyObject *version = read_slot(state, s_version);
    PyObject *current = PyDict_GetItemWithError(scope_dict, s_baseline_version);
    if (current == NULL && PyErr_Occurred()) {
        PyErr_Clear();
    }
    if (version != NULL && current != NULL && PyLong_CheckExact(version)
        && PyLong_CheckExact(current)
        && PyObject_RichCompareBool(version, current, Py_EQ) == 1) {
        PyObject *active = read_slot(state, s_active);
        if (active == Py_None) {
            outcome = VIEW_NONE;
        }
        else if (active != NULL) {
            Py_INCREF(active);
            *view = active;
            outcome = VIEW_FOUND;
        }
        Py_XDECREF(active);
    }
    if (PyErr_Occurred()) {
        PyErr_Clear(); /* a comparison of exact ints cannot fail; be sure anyway */
    }
    Py_XDECREF(version);
    Py_DECREF(state);
    return outcome;
}

/* ---- the allow memos ----------------------------------------------------------------- */

static int
allowed_contains(PyObject *view, PyObject *key)
{
    /* 1 if key is in view.allowed (an exact dict), else 0; never leaves an error set. */
    PyObject *allowed = read_slot(view, s_allowed);
    if (allowed == NULL) {
        return 0;
    }
    int found = PyDict_CheckExact(allowed) ? PyDict_Contains(allowed, key) : 0;
    Py_DECREF(allowed);
    if (found < 0) {
        PyErr_Clear();
        return 0;
    }
    return found;
}

static int
exact_str_or_none(PyObject *value)
{
    return value == Py_None || PyUnicode_CheckExact(value);
}

static int
still_the_same_file(PyObject *path, PyObject *stamp)
{
    /* _settled_open's stamp check: one stat(2) of the path finds (st_dev, st_ino,
     * st_ctime_ns) unchanged. 0 on any doubt. */
    if (!PyTuple_CheckExact(stamp) || PyTuple_GET_SIZE(stamp) != 3) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < 3; i++) {
        if (!PyLong_CheckExact(PyTuple_GET_ITEM(stamp, i))) {
            return 0;
        }
    }
    unsigned long long dev = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(stamp, 0));
    unsigned long long ino = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(stamp, 1));
    long long ctime_ns = PyLong_AsLongLong(PyTuple_GET_ITEM(stamp, 2));
    if (PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(path, &size);
    if (text == NULL) {
        PyErr_Clear(); /* not UTF-8 (surrogates): os.stat would encode it otherwise */
        return 0;
    }
    if ((size_t)size != strlen(text)) {
        return 0; /* an embedded NUL: os.stat refuses it */
    }
    struct stat found;
    int failed;
    /* As os.stat does: other threads run while the kernel walks the path. Everything
     * read here is a C copy, or the path's UTF-8 buffer, which lives as long as the
     * event's arguments do (the caller holds them). */
    Py_BEGIN_ALLOW_THREADS
    failed = stat(text, &found);
    Py_END_ALLOW_THREADS
    if (failed) {
        return 0;
    }
    long long seconds = (long long)found.st_ctim.tv_sec;
    if (seconds > LLONG_MAX / 1000000000LL - 1 || seconds < LLONG_MIN / 1000000000LL + 1) {
        return 0;
    }
    return (unsigned long long)found.st_dev == dev && (unsigned long long)found.st_ino == ino
           && seconds * 1000000000LL + (long long)found.st_ctim.tv_nsec == ctime_ns;
}

static int
open_allowed(Slot *slot, PyObject *args, PyObject *view)
{
    /* sensors/files.py _settled_open */
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) != 3) {
        return 0;
    }
    PyObject *path = PyTuple_GET_ITEM(args, 0);
    if (!PyUnicode_CheckExact(path) || !exact_str_or_none(PyTuple_GET_ITEM(args, 1))
        || !PyLong_CheckExact(PyTuple_GET_ITEM(args, 2))) {
        return 0;
    }
    PyObject *decided = PyDict_GetItemWithError(slot->memo_a, slot->memo_b);
    if (decided == NULL || !PyTuple_CheckExact(decided) || PyTuple_GET_SIZE(decided) != 2
        || PyTuple_GET_ITEM(decided, 0) != view || !PyDict_CheckExact(PyTuple_GET_ITEM(decided, 1))) {
        PyErr_Clear();
        return 0;
    }
    /* Hold the memo: the stat below lets other threads run, and one may replace it. */
    PyObject *seen = PyTuple_GET_ITEM(decided, 1);
    Py_INCREF(seen);
    PyObject *stamp = PyDict_GetItemWithError(seen, args);
    int allowed = 0;
    if (stamp == Py_None) {
        allowed = 1;
    }
    else if (stamp != NULL) {
        Py_INCREF(stamp);
        allowed = still_the_same_file(path, stamp);
        Py_DECREF(stamp);
    }
    PyErr_Clear();
    Py_DECREF(seen);
    return allowed;
}

static int
address_allowed(Slot *slot, PyObject *args, PyObject *view)
{
    /* sensors/network.py _known_allowed_address: args is (socket, address). */
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) != 2) {
        return 0;
    }
    PyObject *sock = PyTuple_GET_ITEM(args, 0), *address = PyTuple_GET_ITEM(args, 1);
    if (!PyTuple_CheckExact(address) || PyTuple_GET_SIZE(address) != 2
        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(address, 0))
        || !PyLong_CheckExact(PyTuple_GET_ITEM(address, 1))) {
        return 0;
    }
    /* The C-level family member, read past any property a subclass defines. */
    descrgetfunc get = Py_TYPE(slot->memo_b)->tp_descr_get;
    PyObject *family = get == NULL ? NULL : get(slot->memo_b, sock, (PyObject *)Py_TYPE(sock));
    if (family == NULL) {
        PyErr_Clear(); /* not a socket */
        return 0;
    }
    int allowed = 0;
    if (PyLong_CheckExact(family)) {
        PyObject *key = PyTuple_Pack(3, slot->memo_a, family, address);
        if (key != NULL) {
            allowed = allowed_contains(view, key);
            Py_DECREF(key);
        }
    }
    Py_DECREF(family);
    PyErr_Clear();
    return allowed;
}

static int
lookup_allowed(Slot *slot, PyObject *args, PyObject *view)
{
    /* sensors/network.py _known_allowed_lookup: args[0] is the host. */
    if (!PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) < 1
        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(args, 0))) {
        return 0;
    }
    PyObject *key = PyTuple_Pack(2, slot->memo_a, PyTuple_GET_ITEM(args, 0));
    if (key == NULL) {
        PyErr_Clear();
        return 0;
    }
    int allowed = allowed_contains(view, key);
    Py_DECREF(key);
    return allowed;
}

static int
memo_allows(Slot *slot, PyObject *args, PyObject *view)
{
    switch (slot->memo) {
    case MEMO_OPEN:
        return open_allowed(slot, args, view);
    case MEMO_ADDRESS:
        return address_allowed(slot, args, view);
    case MEMO_LOOKUP:
        return lookup_allowed(slot, args, view);
    default:
        return 0;
    }
}

/* ---- the hook ---------------------------------------------------------------------- */

static int
call_python(const char *event, PyObject *args)
{
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

static int
gate(const char *event, PyObject *args, void *Py_UNUSED(user_data))
{
    if (dispatch == NULL) {
        return 0;
    }
    Slot *slot = find(table, event);
    if (slot == NULL) {
        return 0;
    }
    if (slot->always) {
        return call_python(event, args);
    }
    PyObject *view;
    int found = view_in_force(&view);
    if (found == -1) {
        return -1;
    }
    if (found == VIEW_NONE) {
        return 0;
    }
    if (found == VIEW_FOUND) {
        /* memo_allows may let other threads run (a stat): keep this slot's objects. */
        PyObject *a = slot->memo_a, *b = slot->memo_b;
        Py_XINCREF(a);
        Py_XINCREF(b);
        Slot copy = *slot;
        int allowed = memo_allows(&copy, args, view);
        Py_XDECREF(a);
        Py_XDECREF(b);
        Py_DECREF(view);
        if (allowed) {
            return 0;
        }
    }
    return call_python(event, args);
}

/* ---- install ----------------------------------------------------------------------- */

static void
free_table(Slot *slots)
{
    if (slots == NULL) {
        return;
    }
    for (size_t i = 0; i < SLOTS; i++) {
        PyMem_Free(slots[i].name);
        Py_XDECREF(slots[i].memo_a);
        Py_XDECREF(slots[i].memo_b);
    }
    PyMem_Free(slots);
}

static Slot *
add_name(Slot *slots, PyObject *name, int always)
{
    /* The slot for name (added if new), or NULL with an error set. */
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "install(): event names must be str");
        return NULL;
    }
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(name, &size);
    if (text == NULL) {
        return NULL;
    }
    size_t i = hash_name(text) & (SLOTS - 1);
    for (size_t probes = 0; probes < SLOTS; probes++, i = (i + 1) & (SLOTS - 1)) {
        if (slots[i].name == NULL) {
            char *copy = PyMem_Malloc((size_t)size + 1);
            if (copy == NULL) {
                PyErr_NoMemory();
                return NULL;
            }
            memcpy(copy, text, (size_t)size + 1);
            slots[i].name = copy;
            slots[i].always = always;
            return &slots[i];
        }
        if (strcmp(slots[i].name, text) == 0) {
            slots[i].always |= always;
            return &slots[i];
        }
    }
    PyErr_SetString(PyExc_ValueError, "lambdaguard._audit_gate: too many watched events");
    return NULL;
}

static int
add_names(Slot *slots, PyObject *names, int always)
{
    PyObject *iterator = PyObject_GetIter(names);
    if (iterator == NULL) {
        return -1;
    }
    PyObject *item;
    while ((item = PyIter_Next(iterator)) != NULL) {
        Slot *slot = add_name(slots, item, always);
        Py_DECREF(item);
        if (slot == NULL) {
            Py_DECREF(iterator);
            return -1;
        }
    }
    Py_DECREF(iterator);
    return PyErr_Occurred() ? -1 : 0;
}

static int
memo_error(PyObject *event, const char *why)
{
    PyErr_Format(PyExc_ValueError,
                 "install(): the memo of %R must be ('open', namespace dict, name str), "
                 "('address', tag str, member descriptor) or ('lookup', tag str): %s",
                 event, why);
    return -1;
}

static int
add_memo(Slot *slots, PyObject *event, PyObject *spec)
{
    if (!PyUnicode_Check(event)) {
        PyErr_SetString(PyExc_TypeError, "install(): event names must be str");
        return -1;
    }
    const char *name = PyUnicode_AsUTF8(event);
    if (name == NULL) {
        return -1;
    }
    Slot *slot = find(slots, name);
    if (slot == NULL) {
        return memo_error(event, "not a watched event");
    }
    if (!PyTuple_CheckExact(spec) || PyTuple_GET_SIZE(spec) < 2
        || !PyUnicode_Check(PyTuple_GET_ITEM(spec, 0))) {
        return memo_error(event, "not a tuple naming its shape");
    }
    const char *kind = PyUnicode_AsUTF8(PyTuple_GET_ITEM(spec, 0));
    if (kind == NULL) {
        return -1;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(spec);
    PyObject *a = PyTuple_GET_ITEM(spec, 1), *b = size > 2 ? PyTuple_GET_ITEM(spec, 2) : NULL;
    if (strcmp(kind, "open") == 0 && size == 3 && PyDict_CheckExact(a)
        && PyUnicode_CheckExact(b)) {
        slot->memo = MEMO_OPEN;
    }
    else if (strcmp(kind, "address") == 0 && size == 3 && PyUnicode_CheckExact(a)
             && Py_TYPE(b)->tp_descr_get != NULL) {
        slot->memo = MEMO_ADDRESS;
    }
    else if (strcmp(kind, "lookup") == 0 && size == 2 && PyUnicode_CheckExact(a)) {
        slot->memo = MEMO_LOOKUP;
    }
    else {
        return memo_error(event, "unknown shape or wrong parts");
    }
    Py_INCREF(a);
    Py_XSETREF(slot->memo_a, a);
    Py_XINCREF(b);
    Py_XSETREF(slot->memo_b, b);
    return 0;
}

static int
add_memos(Slot *slots, PyObject *memos)
{
    if (!PyDict_Check(memos)) {
        PyErr_SetString(PyExc_TypeError, "install(): memos must be a dict");
        return -1;
    }
    Py_ssize_t pos = 0;
    PyObject *event, *spec;
    while (PyDict_Next(memos, &pos, &event, &spec)) {
        if (add_memo(slots, event, spec) < 0) {
            return -1;
        }
    }
    return 0;
}

static int
intern_names(void)
{
    struct { PyObject **slot; const char *text; } names[] = {
        {&s_baseline_active, "_baseline_active"},
        {&s_baseline_version, "_baseline_version"},
        {&s_active, "_active"},
        {&s_version, "_version"},
        {&s_allowed, "allowed"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL) {
            *names[i].slot = PyUnicode_InternFromString(names[i].text);
            if (*names[i].slot == NULL) {
                return -1;
            }
        }
    }
    return 0;
}

PyDoc_STRVAR(install_doc,
"install(watched, always, hook, scope_var, scope_module, memos={})\n\n"
"Watch these event names (an iterable of str; 'always' ones reach the hook even with no\n"
"policy in force), answer the allow memos of some (event -> shape, see the C file), and\n"
"add the gate as an audit hook, once per process. Called again, it replaces the names\n"
"and memos and keeps the one hook. On error nothing is watched.");

static PyObject *
install(PyObject *Py_UNUSED(module), PyObject *const *argv, Py_ssize_t argc)
{
    if (argc != 5 && argc != 6) {
        PyErr_SetString(PyExc_TypeError, "install() takes 5 or 6 arguments");
        return NULL;
    }
    if (!PyCallable_Check(argv[2])) {
        PyErr_SetString(PyExc_TypeError, "install(): hook must be callable");
        return NULL;
    }
    if (!PyModule_Check(argv[4])) {
        PyErr_SetString(PyExc_TypeError, "install(): scope_module must be a module");
        return NULL;
    }
    if (intern_names() < 0) {
        return NULL;
    }
    /* Build the new table aside, then swap it in: a hook that runs meanwhile (a
     * finaliser raising an event) reads either the old table or the new one, whole. */
    Slot *slots = PyMem_Calloc(SLOTS, sizeof(Slot));
    if (slots == NULL) {
        return PyErr_NoMemory();
    }
    if (add_names(slots, argv[0], 0) < 0 || add_names(slots, argv[1], 1) < 0
        || (argc == 6 && add_memos(slots, argv[5]) < 0)) {
        free_table(slots);
        Slot *old = table;
        table = NULL; /* on error nothing is watched, as the docstring says */
        free_table(old);
        return NULL;
    }
    Py_INCREF(argv[2]);
    Py_XSETREF(dispatch, argv[2]);
    Py_INCREF(argv[3]);
    Py_XSETREF(scope_var, argv[3]);
    PyObject *namespace = PyModule_GetDict(argv[4]);
    Py_INCREF(namespace);
    Py_XSETREF(scope_dict, namespace);
    Slot *old = table;
    table = slots;
    free_table(old);
    if (!hook_added) {
        if (PySys_AddAuditHook(gate, NULL) < 0) {
            return NULL;
        }
        hook_added = 1;
    }
    Py_RETURN_NONE;
}

PyDoc_STRVAR(memo_allows_doc,
"memo_allows(event, args, view) -> bool\n\n"
"Whether the gate's allow memo for this watched event answers 'allowed before' for these\n"
"arguments under this Active view. For tests: compare with the sensor's Python reader.");

static PyObject *
memo_allows_py(PyObject *Py_UNUSED(module), PyObject *const *argv, Py_ssize_t argc)
{
    if (argc != 3 || !PyUnicode_Check(argv[0])) {
        PyErr_SetString(PyExc_TypeError, "memo_allows() takes (event str, args, view)");
        return NULL;
    }
    const char *event = PyUnicode_AsUTF8(argv[0]);
    if (event == NULL) {
        return NULL;
    }
    Slot *slot = find(table, event);
    if (slot == NULL) {
        Py_RETURN_FALSE;
    }
    PyObject *a = slot->memo_a, *b = slot->memo_b;
    Py_XINCREF(a);
    Py_XINCREF(b);
    Slot copy = *slot;
    int allowed = memo_allows(&copy, argv[1], argv[2]);
    Py_XDECREF(a);
    Py_XDECREF(b);
    return PyBool_FromLong(allowed);
}

static PyMethodDef methods[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL, install_doc},
    {"memo_allows", (PyCFunction)(void (*)(void))memo_allows_py, METH_FASTCALL, memo_allows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "lambdaguard._audit_gate",
    "The audit hook's first lines in C: see lambdaguard/_audit_gate.c.",
    -1, /* process-wide state: an audit hook is process-wide too */
    methods,
    NULL, /* m_slots */
    NULL, /* m_traverse */
    NULL, /* m_clear */
    NULL, /* m_free */
};

PyMODINIT_FUNC
PyInit__audit_gate(void)
{
    return PyModule_Create(&module_def);
}
