"""nutpie's numba compilation, with the C callbacks cached on disk so a new process skips the JIT.

nutpie 0.16 builds the log-density and expand callbacks that its sampler calls as closures over
PyTensor's compiled function and the shared arrays. numba cannot cache closures across processes,
so each process spent 5 to 9 s re-compiling them even when PyTensor's own numba cache held the
compiled graph (`../shared/notes/compile_cache/README.md` has the measurements). Here the callbacks
are generated as flat source with the compiled graph as a global and registered with PyTensor's
numba cache locator under a key derived from the graph's own cache key, so they are cached beside
it, under `core.compile_dir` (one directory per Python/PyTensor/numba/nutpie version).

Those callbacks' machine code holds the compiled graph, so a process that has them needs nothing else
from PyTensor's compile: what nutpie reads off the compiled functions (sizes, the variables' layout,
which shared variables each function takes, the functions' keys in numba's cache) is saved beside
numba's cache as JSON under the model's structure key (`fastpaths.structure_key`), and a later process
loads the callbacks by those keys without PyTensor rewriting, differentiating or compiling the graph
(about 0.3 s against 4.5 s for the bundled wellbeing model on two cores). Where the metadata or a
callback is missing or unreadable the model is compiled as before.

Everything else (graph building, shared-data layout, the compiled-model object, initial points) is
nutpie's own, from `nutpie.compile_pymc`; this module depends on nutpie 0.16's layout, which
`pyproject.toml` pins. The callbacks compute exactly what nutpie's do, so a cached and an uncached
fit with the same seed give the same draws (`tests/test_compile_cache.py` checks it).
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

from bayes_trial.core.paths import write_atomic

_LOGP = """def logp_callback(dim, x_, out_, logp_, user_data_):
    if dim != {n_dim}:
        return -1
    x = carray(x_, ({n_dim},))
    out = carray(out_, ({n_dim},))
    user_data = carray(user_data_, (), RECORD)
{unpack}
    try:
        logp_value, grad = inner(x{args})
    except Exception:
        return 1
    logp_[0] = logp_value
    finite = True
    for i in range({n_dim}):
        out[i] = grad[i]
        if not np.isfinite(grad[i]):
            finite = False
    if not finite:
        return 3
    if not np.isfinite(logp_value):
        return 4
    return 0
"""

_EXPAND = """def expand_callback(dim, expanded, x_, out_, user_data_):
    if dim != {n_dim}:
        return -1
    if expanded != {n_expanded}:
        return -1
    x = carray(x_, ({n_dim},))
    out = carray(out_, ({n_expanded},))
    user_data = carray(user_data_, (), RECORD)
{unpack}
    try:
        (values,) = inner(x{args})
    except Exception:
        return -2
    for i in range({n_expanded}):
        out[i] = values[i]
    return 0
"""


def _unpack_shared(names: list[str], shared_data: dict[str, np.ndarray], env: dict) -> tuple[str, str]:
    """Source lines that view each shared array in nutpie's user-data record, and the call's extra arguments."""
    lines, args = [], []
    for i, name in enumerate(names):
        value = shared_data[name]
        env[f"DTYPE{i}"] = value.dtype
        lines.append(f"    flat{i} = carray(address(user_data['shared']['data'][{name!r}][()]), "
                     f"int(user_data['shared']['size'][{name!r}][()]), DTYPE{i})")
        dims = ", ".join(f"user_data['shared']['shape'][{name!r}][{d}]" for d in range(value.ndim))
        lines.append(f"    shared{i} = flat{i}.reshape(({dims},))" if value.ndim else f"    shared{i} = flat{i}.reshape(())")
        args.append(f", shared{i}")
    return "\n".join(lines), "".join(args)


def _signatures() -> dict:
    """numba signatures of nutpie's two C callbacks, by template."""
    import numba

    pointer, int64, uint64, voidptr = (numba.types.CPointer(numba.types.double), numba.types.int64,
                                       numba.types.uint64, numba.types.voidptr)
    return {_LOGP: int64(uint64, pointer, pointer, pointer, voidptr),
            _EXPAND: int64(uint64, uint64, pointer, pointer, voidptr)}


def _callback(template: str, inner, inner_key: str | None, names: list[str], shared_data: dict, record_dtype,
              **sizes):
    """A numba C callback around PyTensor's compiled `inner`, disk-cached under a key derived from `inner_key`.

    `inner_key` is the key of `inner` in PyTensor's numba cache (None: not cacheable, compiled in this
    process only). With `inner` None the callback is only loaded: the one that a process which had `inner`
    cached under the same key (its machine code holds `inner`'s), or None when there is none.
    """
    import numba
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import compile_numba_function_src

    env = {"__name__": __name__, "np": np, "carray": numba.carray, "address": address_as_void_pointer, "inner": inner,
           "RECORD": record_dtype}
    unpack, args = _unpack_shared(names, shared_data, env)
    source = template.format(unpack=unpack, args=args, **sizes)
    name = source.split("(", 1)[0].removeprefix("def ")
    key = None if inner_key is None else hashlib.sha256(f"{inner_key}|{record_dtype.descr}|{source}".encode()).hexdigest()
    function = compile_numba_function_src(source, name, global_env=env, cache_key=key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaWarning)
        if key is not None:
            try:
                return numba.cfunc(_signatures()[template], cache=True)(function)
            except Exception:  # an unreadable cache entry (another version's, or damaged), or none to load
                pass
        return None if inner is None else numba.cfunc(_signatures()[template])(function)


def _initial_point_function(pymc_model):
    """As nutpie makes it by default: support points, jittered for every free variable."""
    from nutpie.compile_pymc import _wrap_with_lock
    from pymc.initial_point import make_initial_point_fn

    return _wrap_with_lock(make_initial_point_fn(
        model=pymc_model, overrides=None, default_strategy="support_point", jitter_rvs=set(pymc_model.free_RVs),
        return_transformed=True))


def _flat_initial_points(pymc_model, shape_info):
    """`pymc_model`'s initial points as the flat vector that the sampler takes, or None if its variables are not those of `shape_info`."""
    from nutpie.compile_pymc import _rv_dict_to_flat_array_wrapper

    names = [pymc_model.rvs_to_values[rv].name for rv in pymc_model.free_RVs]  # as `_make_functions` joins them
    if list(shape_info[0][:len(names)]) != names:
        return None
    shapes = [tuple(shape) for shape in shape_info[2][:len(names)]]
    return _rv_dict_to_flat_array_wrapper(_initial_point_function(pymc_model), names=names, shapes=shapes)


def for_model(compiled, pymc_model):
    """`compiled` (made for another model of the same structure) with `pymc_model`'s dims, level names and initial points.

    The initial points are those of `pymc_model`'s priors, so a fit through a cached compiled model starts
    where, and samples what, a fit that compiled `pymc_model` itself would; shared data are set by `with_data`.
    """
    import dataclasses

    from nutpie.compile_pymc import _prepare_dims_and_coords

    dims, coords = _prepare_dims_and_coords(pymc_model, compiled.shape_info)
    return dataclasses.replace(compiled, dims=dims, _coords=coords,
                               initial_point_func=_flat_initial_points(pymc_model, compiled.shape_info))


def _frozen_copies(shared: dict) -> dict[str, np.ndarray]:
    """Read-only C-ordered copies of the shared variables' values, as nutpie keeps them."""
    data = {}
    for name, var in shared.items():
        data[name] = np.array(var.get_value(), order="C", copy=True)
        data[name].flags.writeable = False
    return data


def _assemble(pymc_model, n_dim: int, n_expanded: int, shape_info, callbacks, shared_data, user_data, initial_points,
              functions=(None, None)):
    """nutpie's compiled-model object from its parts; `functions`: the PyTensor functions, where compiled."""
    from nutpie.compile_pymc import CompiledPyMCModel, _prepare_dims_and_coords

    dims, coords = _prepare_dims_and_coords(pymc_model, shape_info)
    return CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords, _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=callbacks[0], compiled_expand_func=callbacks[1], initial_point_func=initial_points,
        shared_data=shared_data, user_data=user_data, n_expanded=n_expanded, shape_info=shape_info,
        logp_func=functions[0], expand_func=functions[1])


def _metadata_path(key: str):
    """Where the metadata of the compiled model of structure `key` is kept: beside PyTensor's numba cache."""
    from pytensor.configdefaults import config

    return config.base_compiledir / "nutpie" / f"{key}.json"


def _save_metadata(key: str, metadata: dict) -> None:
    """Write `metadata` under `key` atomically (concurrent writers: the last one wins, both complete)."""
    import json

    path = _metadata_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda handle: json.dump(metadata, handle))
    except OSError:  # a read-only cache: the next process compiles again
        pass


def _load(pymc_model, key: str, shared: dict):
    """The compiled model of structure `key` from the disk cache, without PyTensor compiling: None if not there.

    What nutpie derives from PyTensor's compiled functions (sizes, the variables' layout, which shared
    variables each function reads and the functions' keys in numba's cache) was saved by the process
    that compiled it (`compile_model`); the C callbacks' machine code comes from numba's cache. The
    shared data are `pymc_model`'s current values (`shared`: its shared variables by name).
    """
    import json

    from nutpie.compile_pymc import make_user_data

    try:
        metadata = json.loads(_metadata_path(key).read_text())
    except (OSError, ValueError):
        return None
    names = list(dict.fromkeys([*metadata["logp_shared"], *metadata["expand_shared"]]))
    if not set(names) <= set(shared):
        return None
    shared_data = _frozen_copies({name: shared[name] for name in names})
    user_data = make_user_data({name: shared[name] for name in names}, shared_data)
    n_dim, n_expanded = metadata["n_dim"], metadata["n_expanded"]
    logp = _callback(_LOGP, None, metadata["logp_key"], metadata["logp_shared"], shared_data, user_data.dtype,
                     n_dim=n_dim)
    expand = _callback(_EXPAND, None, metadata["expand_key"], metadata["expand_shared"], shared_data, user_data.dtype,
                       n_dim=n_dim, n_expanded=n_expanded)
    variables, slices, shapes = metadata["shape_info"]
    shape_info = (variables, [slice(start, stop) for start, stop in slices], [tuple(shape) for shape in shapes])
    initial_points = _flat_initial_points(pymc_model, shape_info)
    if logp is None or expand is None or initial_points is None:
        return None
    return _assemble(pymc_model, n_dim, n_expanded, shape_info, (logp, expand), shared_data, user_data, initial_points)


def compile_model(pymc_model, var_names: list[str] | None = None, *, key: str | None = None,
                  shared: dict | None = None):
    """`nutpie.compile_pymc_model(pymc_model, var_names=var_names)` (numba backend), cached on disk.

    With a structure `key` (`fastpaths.structure_key`) and `pymc_model`'s shared variables by name
    (`shared`), a model of that structure that any process compiled before is loaded without PyTensor
    compiling anything (`_load`); one compiled now is saved for the next process. Without them, PyTensor
    compiles the graph and only the C callbacks come from the disk cache where they are there.

    Returns (compiled model, whether its machine code was loaded from the disk cache).
    """
    from nutpie.compile_pymc import _make_functions, make_user_data
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    if key is not None:
        loaded = _load(pymc_model, key, shared or {})
        if loaded is not None:
            return loaded, True
    n_dim, n_expanded, logp_fn, expand_fn, initial_points, shape_info = _make_functions(
        pymc_model, mode="NUMBA", compute_grad=True, join_expanded=True,
        pymc_initial_point_fn=_initial_point_function(pymc_model), var_names=var_names)
    shared_vars = {var.name: var for var in [*logp_fn.get_shared(), *expand_fn.get_shared()]}
    shared_data = _frozen_copies(shared_vars)
    user_data = make_user_data(shared_vars, shared_data)
    logp_shared, expand_shared = [v.name for v in logp_fn.get_shared()], [v.name for v in expand_fn.get_shared()]
    logp_key, expand_key = (CACHED_SRC_FUNCTIONS.get(fn.vm.jit_fn.py_func) for fn in (logp_fn, expand_fn))
    logp = _callback(_LOGP, logp_fn.vm.jit_fn, logp_key, logp_shared, shared_data, user_data.dtype, n_dim=n_dim)
    expand = _callback(_EXPAND, expand_fn.vm.jit_fn, expand_key, expand_shared, shared_data, user_data.dtype,
                       n_dim=n_dim, n_expanded=n_expanded)
    if key is not None and logp_key is not None and expand_key is not None:
        _save_metadata(key, {"n_dim": int(n_dim), "n_expanded": int(n_expanded), "logp_shared": logp_shared,
                             "expand_shared": expand_shared, "logp_key": logp_key, "expand_key": expand_key,
                             "shape_info": [list(shape_info[0]), [[int(s.start), int(s.stop)] for s in shape_info[1]],
                                            [[int(n) for n in shape] for shape in shape_info[2]]]})
    return (_assemble(pymc_model, n_dim, n_expanded, shape_info, (logp, expand), shared_data, user_data, initial_points,
                      (logp_fn, expand_fn)),
            logp.cache_hits > 0 and expand.cache_hits > 0)
