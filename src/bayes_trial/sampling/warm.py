"""Compiling the bundled specs before a user's first fit: what `bayes-trial cache warm` does.

A compiled model is kept on disk per model structure (`fastpaths.compile_nutpie`, `disk_compile`). Only
the collapsed Gaussian participant-intercept model (`fastpaths.collapsed_model`) holds no size of the
data, so only its compiled form serves a user's own trial: any layout (towns, consultants, waves,
persons) with the spec's formula terms and the same number of arms, since the number of arms sets the
number of sampled standard deviations. Warming therefore compiles each such bundled spec once per
number of arms, each on a small simulated trial (`simulation.design.with_arms` of the bundled design
`small`); other specs' compiled models depend on the data's layout and are skipped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bayes_trial.core.progress import say
from bayes_trial.families import registry
from bayes_trial.modelling import frames as model_mod
from bayes_trial.modelling.spec import bundled_specs, load_spec
from bayes_trial.simulation.design import load_design, with_arms
from bayes_trial.simulation.generate import simulate

DEFAULT_ARMS = (2, 3, 4, 5)
DESIGN = "small"
SEED = 1
LAYOUT_BOUND = "skipped: its compiled model depends on the data's layout"


@dataclass(frozen=True)
class Warmed:
    """One spec at one number of arms: what warming did (`outcome`) and in how many seconds (simulation included).

    `outcome` is "compiled", "on disk already" (another process compiled it), "compiled in this process
    already" or, with `arms` None,
    why the spec was skipped (`LAYOUT_BOUND`).
    """

    spec: str
    arms: int | None
    seconds: float
    outcome: str


def warm_cache(specs: list[str] | None = None, arms: tuple[int, ...] = DEFAULT_ARMS, *,
               progress: bool = True) -> list[Warmed]:
    """Compile each of `specs` (default: every bundled spec) for each number of `arms`, into the disk cache.

    A spec whose compiled model depends on the data's layout is skipped without compiling: at once when
    its family or formula rules the collapsed model out, else after its first simulated trial. Each
    compile goes where a fit's would (`core.compile_dir`), so a later fit in any process of a warmed
    spec, on data with one of these numbers of arms, loads it from disk.
    Progress lines go to stderr when `progress` is true. Returns one `Warmed` per spec and number of
    arms (one per skipped spec).
    """
    from bayes_trial.sampling.build import stored_variables
    from bayes_trial.sampling.fastpaths import can_marginalise, compile_nutpie, participant_intercept_only, sampled_model
    from bayes_trial.sampling.fit import fast_path, model_to_sample

    base = load_design(DESIGN)
    done = []
    for name in specs or bundled_specs():
        spec = load_spec(name)
        layout_free = registry.get(spec.family).integrates_participants and participant_intercept_only(spec.formula)
        for n in arms if layout_free else ():
            started = time.perf_counter()
            prepared = model_mod.prepare(spec, simulate(with_arms(base, n), seed=SEED).table(spec.table))
            layout_free = fast_path(spec.sampler) and can_marginalise(prepared)
            if layout_free:
                target, _, layout_free = sampled_model(
                    model_to_sample(model_mod.resolve_priors(spec, prepared).spec, prepared, spec.sampler), prepared)
            if not layout_free:  # not collapsed: a fit of other data would not find it
                break
            _, _, where = compile_nutpie(target, stored_variables(target))
            outcome = {"": "compiled", "disk": "on disk already"}.get(where, "compiled in this process already")
            done.append(Warmed(name, n, time.perf_counter() - started, outcome))
            say(f"{name}, {n} arms: {outcome} ({done[-1].seconds:.1f} s)", progress)
        if not layout_free:
            done.append(Warmed(name, None, 0.0, LAYOUT_BOUND))
            say(f"{name}: {LAYOUT_BOUND}", progress)
    return done
