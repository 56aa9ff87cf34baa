"""nutpie's numba compilation, with the C callbacks cached on disk so a new process skips the JIT.

nutpie 0.16 builds the log-density and expand callbacks that its sampler calls as closures over
PyTensor's compiled function and the shared arrays. numba cannot cache closures across processes,
so each process spent 5 to 9 s re-compiling them even when PyTensor's own numba cache held the
compiled graph (`../shared/notes/compile_cache/README.md` has the measurements). Here the callbacks
are generated as flat source with the compiled graph as a global and registered with PyTensor's
numba cache locator under a key derived from the graph's own cache key, so they are cached beside
it, under `core.compile_dir` (one directory per Python/PyTensor/numba/nutpie version).

Everything else (graph building, shared-data layout, the compiled-model object, initial points) is
nutpie's own, from `nutpie.compile_pymc`; this module depends on nutpie 0.16's layout, which
`pyproject.toml` pins. The callbacks compute exactly what nutpie's do, so a cached and an uncached
fit with the same seed give the same draws (`tests/test_fastpaths.py` checks it).
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

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


def _callback(template: str, signature, inner, names: list[str], shared_data: dict, record_dtype, **sizes):
    """A numba C callback around PyTensor's compiled `inner`, disk-cached when `inner` is."""
    import numba
    from nutpie.compile_pymc import address_as_void_pointer
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS, compile_numba_function_src

    env = {"__name__": __name__, "np": np, "carray": numba.carray, "address": address_as_void_pointer, "inner": inner, "RECORD": record_dtype}
    unpack, args = _unpack_shared(names, shared_data, env)
    source = template.format(unpack=unpack, args=args, **sizes)
    name = source.split("(", 1)[0].removeprefix("def ")
    inner_key = CACHED_SRC_FUNCTIONS.get(inner.py_func)
    key = None if inner_key is None else hashlib.sha256(f"{inner_key}|{record_dtype.descr}|{source}".encode()).hexdigest()
    function = compile_numba_function_src(source, name, global_env=env, cache_key=key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.NumbaWarning)
        if key is not None:
            try:
                return numba.cfunc(signature, cache=True)(function)
            except Exception:  # an unreadable cache entry (another version's, or damaged): compile afresh
                pass
        return numba.cfunc(signature)(function)


def _initial_point_function(pymc_model):
    """As nutpie makes it by default: support points, jittered for every free variable."""
    from nutpie.compile_pymc import _wrap_with_lock
    from pymc.initial_point import make_initial_point_fn

    return _wrap_with_lock(make_initial_point_fn(
        model=pymc_model, overrides=None, default_strategy="support_point", jitter_rvs=set(pymc_model.free_RVs),
        return_transformed=True))


def for_model(compiled, pymc_model):
    """`compiled` (made for another model of the same structure) with `pymc_model`'s dims, level names and initial points.

    The initial points are those of `pymc_model`'s priors, so a fit through a cached compiled model starts
    where, and samples what, a fit that compiled `pymc_model` itself would; shared data are set by `with_data`.
    """
    import dataclasses

    from nutpie.compile_pymc import _compute_shapes, _prepare_dims_and_coords, _rv_dict_to_flat_array_wrapper

    names = [pymc_model.rvs_to_values[rv].name for rv in pymc_model.free_RVs]  # as `_make_functions` joins them
    shapes = _compute_shapes(pymc_model)
    initial_points = _rv_dict_to_flat_array_wrapper(_initial_point_function(pymc_model), names=names,
                                                    shapes=[shapes[name] for name in names])
    dims, coords = _prepare_dims_and_coords(pymc_model, compiled.shape_info)
    return dataclasses.replace(compiled, dims=dims, _coords=coords, initial_point_func=initial_points)


def compile_model(pymc_model, var_names: list[str] | None = None):
    """`nutpie.compile_pymc_model(pymc_model, var_names=var_names)` (numba backend), with disk-cached callbacks.

    Returns (compiled model, whether both callbacks were loaded from the disk cache).
    """
    import numba
    from nutpie.compile_pymc import CompiledPyMCModel, _make_functions, _prepare_dims_and_coords, make_user_data

    initial_point_fn = _initial_point_function(pymc_model)
    n_dim, n_expanded, logp_fn, expand_fn, initial_point_fn, shape_info = _make_functions(
        pymc_model, mode="NUMBA", compute_grad=True, join_expanded=True, pymc_initial_point_fn=initial_point_fn,
        var_names=var_names)
    shared_data, shared_vars = {}, {}
    for var in [*logp_fn.get_shared(), *expand_fn.get_shared()]:
        shared_data[var.name] = np.array(var.get_value(), order="C", copy=True)
        shared_data[var.name].flags.writeable = False
        shared_vars[var.name] = var
    user_data = make_user_data(shared_vars, shared_data)
    pointer = numba.types.CPointer(numba.types.double)
    logp = _callback(_LOGP, numba.types.int64(numba.types.uint64, pointer, pointer, pointer, numba.types.voidptr),
                     logp_fn.vm.jit_fn, [v.name for v in logp_fn.get_shared()], shared_data, user_data.dtype,
                     n_dim=n_dim)
    expand = _callback(_EXPAND, numba.types.int64(numba.types.uint64, numba.types.uint64, pointer, pointer,
                                                  numba.types.voidptr),
                       expand_fn.vm.jit_fn, [v.name for v in expand_fn.get_shared()], shared_data, user_data.dtype,
                       n_dim=n_dim, n_expanded=n_expanded)
    dims, coords = _prepare_dims_and_coords(pymc_model, shape_info)
    from_disk = logp.cache_hits > 0 and expand.cache_hits > 0
    return CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords, _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info)},
        compiled_logp_func=logp, compiled_expand_func=expand, initial_point_func=initial_point_fn,
        shared_data=shared_data, user_data=user_data, n_expanded=n_expanded, shape_info=shape_info,
        logp_func=logp_fn, expand_func=expand_fn), from_disk
