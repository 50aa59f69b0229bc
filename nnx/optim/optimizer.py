"""Base class of the optimizers: parameter groups, weight decay, per-parameter state."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from .. import backends as _backends
from .._array import array_namespace, device, dtype_name
from ..module import Module, Parameter, as_parameter_list, backend_of

Params = Module | Iterable[Parameter] | Iterable[Mapping[str, Any]]


def check_real(name: str, value: Any, owner: str = "") -> float:
    """``value`` as a finite float: any real number (Python or NumPy scalar), not a bool.

    ValueError naming ``owner`` (a class name, optional) and the argument otherwise.
    """
    where = f"{owner}: " if owner else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}{name} must be a real number, got {value!r} "
                         f"({type(value).__name__})")
    try:
        out = float(value)
    except OverflowError:  # an int beyond the float range
        out = math.inf
    if not math.isfinite(out):
        raise ValueError(f"{where}{name} must be finite, got {value!r}")
    return out


def check_lr(lr: Any, owner: str = "") -> float:
    out = check_real("lr", lr, owner)
    if out < 0.0:
        raise ValueError(f"{owner + ': ' if owner else ''}lr must be >= 0, got {lr!r}")
    return out


def check_weight_decay(weight_decay: Any, owner: str = "") -> float:
    out = check_real("weight_decay", weight_decay, owner)
    if out < 0.0:
        raise ValueError(f"{owner + ': ' if owner else ''}weight_decay must be >= 0, "
                         f"got {weight_decay!r}")
    return out


def check_momentum(name: str, value: Any, owner: str = "") -> float:
    out = check_real(name, value, owner)
    if not 0.0 <= out < 1.0:
        raise ValueError(f"{owner + ': ' if owner else ''}{name} must lie in [0, 1), "
                         f"got {value!r}")
    return out


def _same_place(buf: Any, ref: Any) -> bool:
    """Whether ``buf`` is of ``ref``'s array type, dtype and device (run every step for
    every buffer: attribute reads and comparisons only)."""
    return (type(buf) is type(ref) and buf.dtype == ref.dtype
            and getattr(buf, "device", None) == getattr(ref, "device", None))


class Optimizer:
    """Shared machinery: parameter groups, ``lr``, decayed gradients, per-parameter state.

    ``params`` is a Module, an iterable of Parameters, or PyTorch's parameter groups: an
    iterable of dicts, each with ``"params"`` (a Module or Parameters) and optionally
    its own hyperparameters, which override the constructor's for that group::

        SGD([{"params": convs, "weight_decay": 0.0}, {"params": heads}], lr=0.1, momentum=0.9)

    ``param_groups`` is the list of those dicts (``"params"`` as a list, every
    hyperparameter filled in); steps read it each time, so a scheduler or the user may
    change a group's ``"lr"`` (or ``"momentum"``, ``"betas"``) between steps. ``lr``
    reads the first group's and, when assigned, sets every group's. A Parameter may be in
    one group only.

    Weight decay is added to each gradient exactly once: a parameter's own
    ``weight_decay`` (set by a layer) wins; ``None`` there means its group's.
    Hyperparameters accept any finite real number, NumPy scalars included (not bools,
    NaN or ±inf).

    Per-parameter state (momentum buffers, moments) lives where its parameter lives:
    when a parameter has moved (``model.to("torch")``, ``model.to(dtype="float64")``,
    another device) after the optimizer was built, ``step()`` first moves its state to
    the parameter's library, device and dtype.
    """

    #: Names of the per-parameter state arrays; the first is what ``buffers`` lists.
    slots: tuple[str, ...] = ()

    def __init__(self, params: Params, defaults: Mapping[str, Any]) -> None:
        name = type(self).__name__
        self.defaults = self._check_group(dict(defaults), name)
        self.param_groups: list[dict[str, Any]] = []
        for i, group in enumerate(_as_groups(params, name)):
            extra = {k: v for k, v in group.items() if k != "params"}
            unknown = sorted(set(extra) - set(self.defaults))
            if unknown:
                raise ValueError(f"{name}: parameter group {i} has unknown settings "
                                 f"{', '.join(unknown)}; known: {', '.join(self.defaults)}")
            checked = self._check_group({**self.defaults, **extra}, f"{name} group {i}")
            self.param_groups.append({"params": group["params"], **checked})
        self.params = [p for g in self.param_groups for p in g["params"]]
        seen: dict[int, int] = {}
        for gi, g in enumerate(self.param_groups):
            for p in g["params"]:
                if id(p) in seen and seen[id(p)] != gi:
                    raise ValueError(f"{name}: a parameter is in groups {seen[id(p)]} and {gi}; "
                                     "each parameter may be in one group only")
                seen[id(p)] = gi
        if len(seen) != len(self.params):
            raise ValueError(f"{name}: a parameter is listed twice")
        self._index = {id(p): i for i, p in enumerate(self.params)}
        self.state: list[dict[str, Any]] = [{} for _ in self.params]
        self.step_count = 0

    # -- hyperparameters --------------------------------------------------
    @property
    def lr(self) -> float:
        """The first group's learning rate; assigning sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        value = check_lr(value, type(self).__name__)
        for g in self.param_groups:
            g["lr"] = value

    def __getattr__(self, name: str) -> Any:
        defaults = self.__dict__.get("defaults")
        if defaults is not None and name in defaults:
            return self.__dict__["param_groups"][0][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def hyperparameters(self) -> dict[str, Any]:
        """The first group's hyperparameters other than lr."""
        return {k: v for k, v in self.param_groups[0].items() if k not in ("params", "lr")}

    def _check_group(self, group: dict[str, Any], owner: str) -> dict[str, Any]:
        """``group`` (lr and hyperparameters) validated, as floats/bools; ValueError naming
        ``owner`` and the setting otherwise."""
        out = dict(group)
        out["lr"] = check_lr(out.get("lr"), owner)
        out.update(self._check_hyper({k: v for k, v in out.items() if k != "lr"}, owner))
        return out

    def _check_hyper(self, hyper: dict[str, Any], owner: str) -> dict[str, Any]:
        """The optimizer's own hyperparameters validated (subclasses)."""
        raise NotImplementedError

    def required_slots(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        """The state arrays every parameter of ``group`` has after its first step."""
        return ()

    # -- the update -------------------------------------------------------
    def decay_of(self, p: Parameter, group: Mapping[str, Any] | None = None) -> float:
        wd = (group or self.param_groups[0])["weight_decay"]
        return wd if p.weight_decay is None else p.weight_decay

    def decayed_grad(self, p: Parameter, group: Mapping[str, Any] | None = None) -> Any:
        """g + λp (a new array; ``p.grad`` is left as backward wrote it)."""
        lam = self.decay_of(p, group)
        if lam == 0.0:
            return p.grad
        return p.grad + lam * p.data

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient, group by group.

        State that lives on another library, device or dtype than its parameter (the
        model was moved) is moved (copied) there first.
        """
        for group in self.param_groups:
            self._step_group(group)
        self.step_count += 1

    def _rehome(self, p: Parameter) -> dict[str, Any]:
        """``p``'s state, each array moved to ``p``'s library, device and dtype if needed."""
        st = self.state[self._index[id(p)]]
        for key, value in st.items():
            if not _same_place(value, p.data):
                st[key] = _backends.asarray(value, backend_of(p.data),
                                            dtype=dtype_name(p.dtype), copy=True)
        return st

    def _step_group(self, group: Mapping[str, Any]) -> None:
        """One update of every parameter of ``group`` that has a gradient (subclasses may
        update a whole group at once, e.g. through :class:`FlatGroup`)."""
        for p in group["params"]:
            if p.grad is None:
                continue
            st = self._rehome(p)
            self._update(array_namespace(p.data, p.grad), p, st, group)

    def _update(self, xp: Any, p: Parameter, state: dict[str, Any],
                group: Mapping[str, Any]) -> None:
        """Update ``p.data`` (and ``state``, the parameter's arrays by slot name)."""
        raise NotImplementedError

    @property
    def buffers(self) -> list[Any]:
        """Each parameter's first state array (its momentum buffer), or None."""
        slot = self.slots[0] if self.slots else None
        return [None if slot is None else st.get(slot) for st in self.state]

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{"type", "hyperparameters" (the first group's, with lr), "param_groups" (each
        group's parameter indices and settings), "step_count", "buffers": {key: array}}
        with keys ``"i"`` for a parameter's first state array and ``"i.slot"`` for others."""
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "params": [self._index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        buffers = {}
        for i, st in enumerate(self.state):
            for slot, value in st.items():
                buffers[str(i) if slot == self.slots[0] else f"{i}.{slot}"] = value
        return {
            "type": type(self).__name__,
            "hyperparameters": {"lr": self.lr, **_jsonable(self.hyperparameters())},
            "param_groups": [_jsonable(g) for g in groups],
            "step_count": self.step_count,
            "buffers": buffers,
        }

    def keeps_buffers(self, hyperparameters: Mapping[str, Any]) -> bool:
        """Whether, with these hyperparameters, every step leaves a buffer per parameter."""
        return bool(self.required_slots(hyperparameters))

    def _checked_state(self, state: Mapping[str, Any]
                       ) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
        """Validate ``state`` as :meth:`load_state_dict` does, changing nothing.

        Returns (the groups' settings, step_count, each parameter's state arrays as
        given); raises ValueError naming this class and the offending entry.
        """
        name = type(self).__name__
        where = f"{name}.load_state_dict"
        if not isinstance(state, Mapping):
            raise ValueError(f"{where}: state must be a dict, got {type(state).__name__}")
        if state.get("type") != name:
            raise ValueError(f"{where}: state is for {state.get('type')!r}")
        groups = self._checked_groups(state, where)
        raw = state.get("buffers", {})
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: buffers must be a dict of index -> array, got "
                             f"{type(raw).__name__}")
        per_param: list[dict[str, Any]] = [{} for _ in self.params]
        for key, value in raw.items():
            index, _, slot = str(key).partition(".")
            try:
                i = int(index)
            except ValueError:
                raise ValueError(f"{where}: buffer key {key!r} is not a parameter index") from None
            slot = slot or (self.slots[0] if self.slots else "")
            if slot not in self.slots:
                raise ValueError(f"{where}: buffer {key!r}: {name} keeps no {slot!r} state")
            if not 0 <= i < len(self.params):
                raise ValueError(f"{where}: buffer {i} but only {len(self.params)} parameters")
            shape = getattr(value, "shape", None)
            if shape is None:
                raise ValueError(f"{where}: buffer {key} is a {type(value).__name__}, not an "
                                 "array")
            if tuple(int(s) for s in shape) != self.params[i].shape:
                raise ValueError(f"{where}: buffer {key} has shape {tuple(shape)}, parameter "
                                 f"has {self.params[i].shape}")
            per_param[i][slot] = value
        step_count = state.get("step_count", 0)
        if isinstance(step_count, bool) or not isinstance(step_count, numbers.Integral) \
                or step_count < 0:
            raise ValueError(f"{where}: step_count must be an int >= 0, got {step_count!r}")
        if step_count > 0:
            # a parameter that never had a gradient keeps no state; one that has some of its
            # arrays but not all, or a group whose state is gone entirely, cannot resume
            for group, settings in zip(self.param_groups, groups):
                need = self.required_slots(settings)
                indices = [self._index[id(p)] for p in group["params"]]
                partial = [i for i in indices
                           if per_param[i] and any(s not in per_param[i] for s in need)]
                gone = need and not any(per_param[i] for i in indices)
                if partial or gone:
                    which = partial or indices
                    raise ValueError(f"{where}: after {step_count} steps the state lacks "
                                     f"{'/'.join(need)} for parameters {which[:8]}; it cannot "
                                     "resume exactly")
        return groups, int(step_count), per_param

    def _checked_groups(self, state: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
        """Each group's settings from ``state`` ("param_groups", or the single-group
        "hyperparameters" of nnx 0.1), validated; the partition must be this one's."""
        raw_groups = state.get("param_groups")
        hyper = state.get("hyperparameters", {})
        if not isinstance(hyper, Mapping):
            raise ValueError(f"{where}: hyperparameters must be a dict, got "
                             f"{type(hyper).__name__}")
        if isinstance(raw_groups, list) and raw_groups and isinstance(raw_groups[0], Mapping):
            # "hyperparameters" repeats the first group's settings; where they were edited,
            # they win (the single-group form of nnx 0.1 has only them)
            raw_groups = [{**raw_groups[0], **dict(hyper)}, *raw_groups[1:]]
        if raw_groups is None:
            if len(self.param_groups) != 1:
                raise ValueError(f"{where}: the state has one parameter group, this optimizer "
                                 f"{len(self.param_groups)}")
            raw_groups = [{**dict(hyper), "params": list(range(len(self.params)))}]
        if not isinstance(raw_groups, list) or len(raw_groups) != len(self.param_groups):
            raise ValueError(f"{where}: the state has "
                             f"{len(raw_groups) if isinstance(raw_groups, list) else 'no'} "
                             f"parameter groups, this optimizer {len(self.param_groups)}")
        out = []
        for gi, (raw, group) in enumerate(zip(raw_groups, self.param_groups)):
            if not isinstance(raw, Mapping):
                raise ValueError(f"{where}: parameter group {gi} must be a dict")
            mine = [self._index[id(p)] for p in group["params"]]
            if "params" in raw and list(raw["params"]) != mine:
                raise ValueError(f"{where}: parameter group {gi} holds parameters "
                                 f"{list(raw['params'])[:8]} there, {mine[:8]} here")
            settings = {k: v for k, v in raw.items() if k != "params"}
            current = {k: v for k, v in group.items() if k != "params"}
            unknown = sorted(set(settings) - set(current))
            if unknown:
                raise ValueError(f"{where}: unknown hyperparameters {', '.join(unknown)}")
            try:
                owner = f"group {gi}" if len(self.param_groups) > 1 else ""
                out.append(self._check_group({**current, **settings}, owner))
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore every group's settings (lr included), the step count and the state
        arrays (arrays of any backend are moved to each parameter's backend and device
        and cast to its dtype). Accepts nnx 0.1's single-group form.

        Everything is validated first (as the constructor does: real numbers, not
        bools, NaN or ±inf); on a ValueError the optimizer is left unchanged.
        """
        groups, step_count, per_param = self._checked_state(state)
        new_state: list[dict[str, Any]] = []
        for p, arrays in zip(self.params, per_param):
            # the parameter's backend, device and dtype (a float64 state may resume a
            # float32 model: a float64 buffer would fail or upcast in the in-place update)
            new_state.append({k: _backends.asarray(v, backend_of(p.data), dtype=dtype_name(p.dtype),
                                                   copy=True) for k, v in arrays.items()})
        for group, settings in zip(self.param_groups, groups):
            group.update(settings)
        self.state = new_state
        self.step_count = step_count

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        groups = f", {len(self.param_groups)} groups" if len(self.param_groups) > 1 else ""
        return f"{type(self).__name__}(lr={self.lr}, {hp}{groups})"


class FlatGroup:
    """A parameter group's parameters, and state arrays of one slot, as views of 1-D arrays,
    so that an update is a few long vector operations for all of them.

    ``data`` holds every parameter end to end and each ``p.data`` is rebound to a view of
    it (its shape, dtype and device); the slot's array (a momentum buffer) likewise, each
    parameter's ``state[slot]`` a view of it. The per-parameter arrays stay what they were
    to everyone else: layers read ``p.data``, ``state_dict()`` and ``buffers`` list each
    parameter's own array, and writing into one of them writes into the flat one.

    :meth:`matches` says whether the group still is this one: the same Parameters in the
    same order, each ``p.data`` (and each ``state[slot]``) still the view installed here.
    Whatever rebinds one of them (``model.to``, ``load_state_dict`` of the model or the
    optimizer, a state moved to another device, a user) makes the owner build a new one
    from the current arrays (a copy). On libraries whose in-place operators return a new
    array (immutable arrays) :meth:`set_data` / :meth:`set_slot` install fresh views.
    """

    def __init__(self, xp: Any, params: list[Parameter], states: list[dict[str, Any]],
                 slot: str | None) -> None:
        self.xp = xp
        self.params = tuple(params)
        self.shapes = [tuple(p.data.shape) for p in params]
        self.bounds = [0]
        for shape in self.shapes:
            self.bounds.append(self.bounds[-1] + math.prod(shape))
        self.slot = slot
        self.data = xp.concat([xp.reshape(p.data, (-1,)) for p in params])
        self.views = self._install(self.data, [p for p in params], None)
        self.state: Any = None  # the slot's flat array, once every parameter has one
        self.state_views: list[Any] = []
        if slot is not None and all(slot in st for st in states):
            self.set_slot(xp.concat([xp.reshape(st[slot], (-1,)) for st in states]), states)
        self._decay: tuple[tuple[float, ...], Any] | None = None

    @staticmethod
    def usable(params: list[Parameter], states: list[dict[str, Any]], slot: str | None) -> bool:
        """Whether ``params`` can be flattened now: two or more, every one with a gradient,
        all of one library, device and dtype (gradients too), no array shared by two
        parameters, and the slot's state on all of them or on none."""
        if len(params) < 2:
            return False
        ref = params[0].data
        seen = set()
        for p in params:
            if p.grad is None or not (_same_place(p.data, ref) and _same_place(p.grad, ref)):
                return False
            seen.add(id(p.data))
        if len(seen) != len(params):
            return False
        if slot is not None:
            have = [slot in st for st in states]
            if any(have) and not all(have):
                return False
        return True

    def matches(self, params: list[Parameter], states: list[dict[str, Any]]) -> bool:
        """Whether ``params`` (with ``states``) still are this group's, as installed here."""
        if len(params) != len(self.params):
            return False
        for p, q, view in zip(params, self.params, self.views):
            if p is not q or p.data is not view:
                return False
        if self.slot is None:
            return True
        if self.state is None:
            return not any(self.slot in st for st in states)
        return all(st.get(self.slot) is view for st, view in zip(states, self.state_views))

    def _install(self, flat: Any, params: list[Parameter] | None,
                 states: list[dict[str, Any]] | None) -> list[Any]:
        xp, b = self.xp, self.bounds
        views = [xp.reshape(flat[b[i]:b[i + 1]], shape) for i, shape in enumerate(self.shapes)]
        for i, view in enumerate(views):
            if params is not None:
                params[i].data = view
            if states is not None:
                states[i][self.slot] = view
        return views

    def grad(self) -> Any:
        """Every parameter's gradient, end to end (a new array)."""
        xp = self.xp
        return xp.concat([xp.reshape(p.grad, (-1,)) for p in self.params])

    def add_decay(self, g: Any, decays: tuple[float, ...]) -> Any:
        """g + λ·data, λ each parameter's weight decay (a scalar when they agree)."""
        if all(lam == 0.0 for lam in decays):
            return g
        if all(lam == decays[0] for lam in decays):
            g += decays[0] * self.data
            return g
        if self._decay is None or self._decay[0] != decays:
            xp, b = self.xp, self.bounds
            dev = device(self.data)
            self._decay = (decays, xp.concat([
                xp.full((b[i + 1] - b[i],), lam, dtype=self.data.dtype, device=dev)
                for i, lam in enumerate(decays)]))
        g += self._decay[1] * self.data
        return g

    def set_data(self, new: Any) -> None:
        """Record ``new`` as the flat parameters (the result of an in-place update)."""
        if new is not self.data:  # immutable arrays: views of the new array
            self.data = new
            self.views = self._install(new, list(self.params), None)

    def set_slot(self, new: Any, states: list[dict[str, Any]]) -> None:
        """Record ``new`` as the slot's flat array, ``states`` the parameters' state dicts."""
        if new is not self.state:
            self.state = new
            self.state_views = self._install(new, None, states)


def _as_groups(params: Params, owner: str) -> list[dict[str, Any]]:
    """``params`` as a list of {"params": [Parameter, ...], setting: value} dicts."""
    if isinstance(params, Module):
        return [{"params": as_parameter_list(params)}]
    items = list(params)
    if items and all(isinstance(g, Mapping) for g in items):
        groups = []
        for i, g in enumerate(items):
            if "params" not in g:
                raise ValueError(f"{owner}: parameter group {i} has no 'params'")
            try:
                plist = as_parameter_list(g["params"])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{owner}: parameter group {i}: {exc}") from None
            groups.append({**g, "params": plist})
        return groups
    if any(isinstance(g, Mapping) for g in items):
        raise TypeError(f"{owner}: give either Parameters or parameter-group dicts, not both")
    return [{"params": as_parameter_list(items)}]


def _jsonable(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}
