/* The socket patches' fast path, in C: connect, connect_ex and bind to an exact IP address.
 *
 * lambdaguard's replacement for socket.socket.connect (sensors/network.py,
 * _connect_method) is a Python function, and its frame is most of what a connect costs
 * with lambdaguard installed: about 1,500 instructions with no policy in force and 2,500
 * in scope, on a loopback connect of about 11,000. Two of its cases decide nothing and
 * only forward the call to the original C method:
 *
 *   - no policy in force: the scope ContextVar is None and scope._baseline_active is
 *     None (scope.current()'s first lines);
 *   - an exact (str, int) address whose host is a known IP address literal (the set
 *     sensors/network.py fills, _ip_hosts), on a socket whose real family is AF_INET or
 *     AF_INET6: C resolves nothing before raising its "socket.connect" audit event, and
 *     the audit hook decides it exactly as the patch would (docs/network.md).
 *
 * This object makes those two checks in C and calls the original; every other call goes
 * to the Python function unchanged, with the same arguments, which makes the same checks
 * again and decides. So it changes the cost, never the verdict, and it is narrower than
 * the Python checks: it reads only exact built-in types (tuple, str, int, set, frozenset),
 * so no object of the caller's runs code inside it, and the family is read with
 * _socket.socket's own member descriptor, past any property a subclass defines.
 *
 * It binds like the Python function it stands for (a method descriptor), and every
 * attribute it does not have itself (__name__, __doc__, __wrapped__, ...) is the Python
 * function's. Where this file is not compiled, the Python function is the patch.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *original;   /* the C method: _socket.socket.connect */
    PyObject *slow;       /* the Python replacement, which decides everything else */
    PyObject *ip_hosts;   /* set of str: hosts known to be IP address literals */
    PyObject *families;   /* frozenset of int: AF_INET, AF_INET6 */
    PyObject *family;     /* _socket.socket.__dict__["family"], a member descriptor */
    PyObject *scope_var;  /* lambdaguard.scope._scope */
    PyObject *scope_dict; /* lambdaguard.scope.__dict__, for _baseline_active */
} Forward;

static PyObject *s_baseline_active = NULL;

static int
no_policy_in_force(Forward *self)
{
    /* 1: nothing can object; 0: a scope or a baseline (or a doubt); never an error. */
    PyObject *state = NULL;
    if (PyContextVar_Get(self->scope_var, Py_None, &state) < 0) {
        PyErr_Clear();
        return 0;
    }
    int none = state == Py_None;
    Py_DECREF(state);
    if (!none) {
        return 0;
    }
    PyObject *baseline = PyDict_GetItemWithError(self->scope_dict, s_baseline_active);
    if (baseline == NULL) {
        PyErr_Clear();
        return 0;
    }
    return baseline == Py_None;
}

static int
exact_ip_address(Forward *self, PyObject *sock, PyObject *address)
{
    /* 1 if address is an exact (str, int) tuple whose host is a known IP literal, on a
     * socket whose real family is an IP family; 0 otherwise (never an error). */
    if (!PyTuple_CheckExact(address) || PyTuple_GET_SIZE(address) != 2) {
        return 0;
    }
    PyObject *host = PyTuple_GET_ITEM(address, 0);
    if (!PyUnicode_CheckExact(host) || !PyLong_CheckExact(PyTuple_GET_ITEM(address, 1))) {
        return 0;
    }
    int known = PySet_Contains(self->ip_hosts, host);
    if (known != 1) {
        PyErr_Clear();
        return 0;
    }
    descrgetfunc get = Py_TYPE(self->family)->tp_descr_get;
    PyObject *family = get(self->family, sock, (PyObject *)Py_TYPE(sock));
    if (family == NULL) {
        PyErr_Clear(); /* not a socket: the Python function lets C say why */
        return 0;
    }
    int ip = PyLong_CheckExact(family) ? PySet_Contains(self->families, family) : 0;
    Py_DECREF(family);
    if (ip != 1) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static PyObject *
forward_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Forward *self = (Forward *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == 2 && kwnames == NULL
        && (no_policy_in_force(self) || exact_ip_address(self, args[0], args[1]))) {
        return PyObject_Vectorcall(self->original, args, nargsf, NULL);
    }
    return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
}

static PyObject *
forward_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {
        "original", "slow", "ip_hosts", "families", "family", "scope_var", "scope_module", NULL,
    };
    PyObject *original, *slow, *ip_hosts, *families, *family, *scope_var, *scope_module;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO!O!OOO!:Forward", names, &original,
                                     &slow, &PySet_Type, &ip_hosts, &PyFrozenSet_Type,
                                     &families, &family, &scope_var, &PyModule_Type,
                                     &scope_module)) {
        return NULL;
    }
    if (!PyCallable_Check(original) || !PyCallable_Check(slow)) {
        PyErr_SetString(PyExc_TypeError, "Forward(): original and slow must be callable");
        return NULL;
    }
    if (Py_TYPE(family)->tp_descr_get == NULL) {
        PyErr_SetString(PyExc_TypeError, "Forward(): family must be a descriptor");
        return NULL;
    }
    if (!PyObject_TypeCheck(scope_var, &PyContextVar_Type)) {
        PyErr_SetString(PyExc_TypeError, "Forward(): scope_var must be a ContextVar");
        return NULL;
    }
    if (s_baseline_active == NULL) {
        s_baseline_active = PyUnicode_InternFromString("_baseline_active");
        if (s_baseline_active == NULL) {
            return NULL;
        }
    }
    Forward *self = (Forward *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = forward_vectorcall;
    self->original = Py_NewRef(original);
    self->slow = Py_NewRef(slow);
    self->ip_hosts = Py_NewRef(ip_hosts);
    self->families = Py_NewRef(families);
    self->family = Py_NewRef(family);
    self->scope_var = Py_NewRef(scope_var);
    self->scope_dict = Py_NewRef(PyModule_GetDict(scope_module));
    return (PyObject *)self;
}

static int
forward_traverse(Forward *self, visitproc visit, void *arg)
{
    Py_VISIT(self->original);
    Py_VISIT(self->slow);
    Py_VISIT(self->ip_hosts);
    Py_VISIT(self->families);
    Py_VISIT(self->family);
    Py_VISIT(self->scope_var);
    Py_VISIT(self->scope_dict);
    return 0;
}

static int
forward_clear(Forward *self)
{
    Py_CLEAR(self->original);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->ip_hosts);
    Py_CLEAR(self->families);
    Py_CLEAR(self->family);
    Py_CLEAR(self->scope_var);
    Py_CLEAR(self->scope_dict);
    return 0;
}

static void
forward_dealloc(Forward *self)
{
    PyObject_GC_UnTrack(self);
    forward_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
forward_get(PyObject *self, PyObject *obj, PyObject *Py_UNUSED(type))
{
    /* Bind like a function: on an instance, a bound method; on the class, itself. */
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyObject *
forward_getattro(PyObject *self, PyObject *name)
{
    /* Its own attributes first, then the Python function's (__name__, __wrapped__, ...). */
    PyObject *value = PyObject_GenericGetAttr(self, name);
    if (value != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return value;
    }
    PyErr_Clear();
    return PyObject_GetAttr(((Forward *)self)->slow, name);
}

static PyObject *
forward_repr(Forward *self)
{
    return PyUnicode_FromFormat("<lambdaguard fast path for %R>", self->slow);
}

static PyObject *
forward_slow(Forward *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->slow);
}

static PyObject *
forward_reduce(Forward *self, PyObject *Py_UNUSED(ignored))
{
    /* Pickled by reference, as the function it stands for: module socket, its qualname. */
    return PyObject_GetAttrString(self->slow, "__qualname__");
}

static PyMethodDef forward_methods[] = {
    {"__reduce__", (PyCFunction)forward_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef forward_getset[] = {
    {"slow", (getter)forward_slow, NULL, "the Python replacement, which decides", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(forward_doc,
"Forward(original, slow, ip_hosts, families, family, scope_var, scope_module)\n\n"
"Call original(sock, address) when no policy is in force, or when address is an exact\n"
"(str, int) whose host is in ip_hosts on a socket whose real family (read with the\n"
"descriptor family) is in families; call slow with the same arguments otherwise.");

static PyTypeObject ForwardType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lambdaguard._socket_fastpath.Forward",
    .tp_basicsize = sizeof(Forward),
    .tp_dealloc = (destructor)forward_dealloc,
    .tp_vectorcall_offset = offsetof(Forward, vectorcall),
    .tp_repr = (reprfunc)forward_repr,
    .tp_call = PyVectorcall_Call,
    .tp_getattro = forward_getattro,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = forward_doc,
    .tp_traverse = (traverseproc)forward_traverse,
    .tp_clear = (inquiry)forward_clear,
    .tp_getset = forward_getset,
    .tp_methods = forward_methods,
    .tp_descr_get = forward_get,
    .tp_new = forward_new,
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "lambdaguard._socket_fastpath",
    "The socket patches' fast path in C: see lambdaguard/_socket_fastpath.c.",
    -1,
    NULL,
    NULL, /* m_slots */
    NULL, /* m_traverse */
    NULL, /* m_clear */
    NULL, /* m_free */
};

PyMODINIT_FUNC
PyInit__socket_fastpath(void)
{
    if (PyType_Ready(&ForwardType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&ForwardType);
    if (PyModule_AddObject(module, "Forward", (PyObject *)&ForwardType) < 0) {
        Py_DECREF(&ForwardType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
