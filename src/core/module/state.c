/* Finding the module state: from the module, or from one of its types
 * (their subclasses included). */
#include "module/state.h"

static PyModuleDef *the_def;   /* set once by PyInit__core: the same in every interpreter */

void
ip_state_set_def(PyModuleDef *def)
{
    the_def = def;
}

ip_state *
ip_state_of_module(PyObject *module)
{
    return (ip_state *)PyModule_GetState(module);
}

ip_state *
ip_state_of_type(PyTypeObject *tp)
{
    PyObject *mod = PyType_GetModuleByDef(tp, the_def);
    return mod == NULL ? NULL : ip_state_of_module(mod);
}
