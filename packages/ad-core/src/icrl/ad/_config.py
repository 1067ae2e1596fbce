"""Typed configuration of AD training and in-context evaluation (pydantic, frozen)."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from icrl.histories import runtime
from icrl.seqmodels import MambaConfig, TransformerConfig

from ._context import Context, FullContext
from ._targets import ActionTarget
from ._tokens import RewardAblation

__all__ = [
    "ADConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "device_type_error",
    "load_config_file",
]

_DEVICE_TYPES = ("cpu", "cuda", "mps")

SampleNoise = Literal["gaussian", "uniform"]
"""Shape of the noise a sampled Gaussian action head adds to its mean (see
`EvalConfig.sample_noise`)."""


def device_type_error(spec: str) -> str | None:
    """Why `spec` is not a device icrl.ad can run on ("auto", "cpu", "cuda[:N]", "mps"), or None.

    Checked when a config is read, so that `device="tpu"` fails at once with this message rather
    than deep inside torch after the data was loaded.
    """
    if spec == "auto":
        return None
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in _DEVICE_TYPES:
        return (
            f"device={spec!r} is not a device icrl.ad runs on; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'"
        )
    return None


def _check_device(spec: str) -> str:
    problem = device_type_error(spec)
    if problem:
        raise ValueError(problem)
    return spec


class ConfigError(ValueError):
    """A configuration is invalid; the message names the field or file and what to do."""


class _Frozen(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", frozen=True)


_BACKBONES: dict[str, type[MambaConfig] | type[TransformerConfig]] = {
    "mamba": MambaConfig,
    "transformer": TransformerConfig,
}
# The dict form spells seqmodels' `backend` as kernel_backend: beside `backbone` in one flat
# section, `backend` is a typo away from it, and every config file and checkpoint written so far
# says kernel_backend.
_KEYS = {"backend": "kernel_backend"}
_ADAPTERS = {kind: TypeAdapter(cls) for kind, cls in _BACKBONES.items()}
_DEFAULT_MAX_LEN = next(f.default for f in fields(TransformerConfig) if f.name == "max_len")


def _keys(cls: type[MambaConfig] | type[TransformerConfig]) -> dict[str, str]:
    """Dict-form key -> seqmodels field name of a backbone config (max_len is ADConfig's)."""
    return {_KEYS.get(f.name, f.name): f.name for f in fields(cls) if f.name != "max_len"}


def _backbone(kind: str, values: dict[str, Any]) -> MambaConfig | TransformerConfig:
    """Validate one backbone's fields with pydantic (types) and seqmodels (its own checks),
    naming each bad field by its dict-form key."""
    try:
        return _ADAPTERS[kind].validate_python(values)
    except ValidationError as err:
        keys = {name: key for key, name in _keys(_BACKBONES[kind]).items()}
        problems = []
        for e in err.errors():
            where = f"model.{keys.get(str(e['loc'][0]), e['loc'][0])}" if e["loc"] else "model"
            got = f" (got {e['input']!r})" if e["loc"] else ""
            problems.append(f"{where}: {e['msg'].removeprefix('Value error, ')}{got}")
        raise ValueError("; ".join(problems)) from None


class ADConfig(_Frozen):
    """The AD model: per-component token embeddings, a sequence backbone, a linear action head.

    `backbone` is icrl.seqmodels' own config, MambaConfig or TransformerConfig, with every one
    of its fields (Mamba-2 via `mixer`, `dt_rank`, `headdim`, `norm_eps`, `dropout`, ...); the
    model builds it as it is (a transformer's max_len aside, see `max_len`).

    Dict form (config files, --set, config.json, checkpoints): one flat section. `backbone`
    names the kind ("mamba" or "transformer") and the backbone's fields sit beside AD's own
    under their seqmodels names (model.d_model, model.mixer, model.n_heads, ...), except
    seqmodels' `backend`, spelled `kernel_backend`. The other backbone's fields may stand in a
    section too (one file serves both backbones, switched by model.backbone); they are not used
    and not saved. Without d_model / n_layers the model is 128 wide and 4 deep.
    """

    backbone: MambaConfig | TransformerConfig = MambaConfig(d_model=128, n_layers=4)
    """The sequence backbone's icrl.seqmodels config: MambaConfig (S6 or SSD blocks) or
    TransformerConfig (causal, DT). Dict form: `backbone` = "mamba" / "transformer" and its
    fields flat beside it (see the class docstring). Paper sizes: icrl.ad's presets."""
    embed_dim: int = Field(32, gt=0)
    """Width of each token component's own embedding (paper Table 6: 32 for Mamba)."""
    max_len: int | None = Field(None, gt=0)
    """Transformer only: its position-embedding length (TransformerConfig.max_len). None sizes
    it from the training data when training starts (the checkpoint records the size built); a
    TransformerConfig given with another max_len than seqmodels' default sets this field."""
    action_head: Literal["mse", "gaussian"] = "mse"
    """"mse": the paper's deterministic head, trained by MSE on the recorded action (Eq. 6).
    "gaussian": a diagonal Gaussian (mean and log-std per action dimension) trained by the
    negative log-likelihood of the recorded action and sampled during in-context evaluation, as
    AD samples its categorical head (Laskin et al. 2022). Not the paper's recipe: an MSE head
    regresses to the mean of the source's exploration noise and so cannot explore in context."""

    @property
    def kind(self) -> Literal["mamba", "transformer"]:
        """The backbone's name, as the dict form's `backbone` key spells it."""
        return "transformer" if isinstance(self.backbone, TransformerConfig) else "mamba"

    @model_validator(mode="before")
    @classmethod
    def _from_dict_form(cls, data: Any) -> Any:
        # The flat section is read here, once: the rest of icrl.ad sees the seqmodels config.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        kind = data.pop("backbone", "mamba")
        if not isinstance(kind, str):  # a seqmodels config (Python callers, apps)
            return {**data, **_with_max_len(kind, data.get("max_len"))}
        if kind not in _BACKBONES:
            raise ValueError(
                f"model.backbone={kind!r} is not a backbone; use 'mamba' or 'transformer'"
            )
        mine = _keys(_BACKBONES[kind])
        either = {k for c in _BACKBONES.values() for k in _keys(c)}
        values = {"d_model": 128, "n_layers": 4}
        values |= {mine[k]: data.pop(k) for k in list(data) if k in mine}
        if kind == "transformer":
            # Checked before seqmodels' own checks, in the dict form's words.
            d_model, n_heads = values["d_model"], values.get("n_heads", 4)
            numbers = all(isinstance(v, int) and v > 0 for v in (d_model, n_heads))
            if numbers and d_model % n_heads:
                raise ValueError(
                    f"model.d_model={d_model} is not divisible by model.n_heads={n_heads}; "
                    "choose a d_model that is a multiple of n_heads (and of 8 * n_heads for "
                    "flash)"
                )
            if data.get("max_len") is not None:
                values["max_len"] = data["max_len"]
        else:
            data.pop("max_len", None)  # the transformer's
        # What is left of the backbones' fields is the other backbone's: not used (see above).
        data = {k: v for k, v in data.items() if k not in either}
        return {**data, "backbone": _backbone(kind, values)}

    @model_serializer(mode="wrap")
    def _to_dict_form(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        nested = out.pop("backbone", None)
        if nested is None:  # excluded by the caller
            return out
        keys = {name: key for key, name in _keys(type(self.backbone)).items()}
        flat: dict[str, Any] = {"backbone": self.kind}
        flat |= {keys[name]: value for name, value in nested.items() if name in keys}
        if self.kind == "mamba":
            out.pop("max_len", None)
        return flat | out


def _with_max_len(backbone: Any, max_len: int | None) -> dict[str, Any]:
    """{"backbone": ..., "max_len": ...} for a seqmodels config given whole: ADConfig.max_len
    and a TransformerConfig's own max_len are one setting (see ADConfig.max_len)."""
    if not isinstance(backbone, TransformerConfig):
        return {"backbone": backbone, "max_len": None}  # the transformer's, as in the dict form
    own = None if backbone.max_len == _DEFAULT_MAX_LEN else backbone.max_len
    if max_len is not None and own is not None and own != max_len:
        raise ValueError(
            f"model.max_len={max_len} and the TransformerConfig's max_len={own} disagree; "
            "give one of them"
        )
    max_len = max_len if max_len is not None else own
    if max_len is not None:
        backbone = replace(backbone, max_len=max_len)
    return {"backbone": backbone, "max_len": max_len}


class DataConfig(_Frozen):
    """Which histories to train on and how a training context is cut from them.

    Its dict form (config files, --set, config.json) spells the context as three flat fields,
    `context` ("full" / "episodes" / "window"), `n_episodes` and `window`; validation turns them
    into one typed value, `DataConfig.context` (icrl.ad.FullContext, EpisodesContext or
    WindowContext), which is what the code reads, and dumping writes the flat fields back.
    """

    paths: tuple[Path, ...] = Field(min_length=1)
    """HDF5 histories files written by icrl.histories (one family; all tasks are used)."""
    tasks: tuple[str, ...] | None = None
    """Subset of task names (HDF5 groups) to train on; None uses every task in the files."""
    context: Context = FullContext()
    """The training context. Dict form: `context` = "full" (a task's whole downsampled history),
    "episodes" (`n_episodes` consecutive kept episodes from a random start) or "window"
    (random windows of `window` transitions); in Python, a Context value."""
    num_workers: int = Field(0, ge=0)
    """DataLoader worker processes that cut and pad batches on the CPU (each opens the HDF5
    files lazily). 0: none; the histories are copied to the training device once and every
    batch is cut there, in the training process (faster wherever they fit in its memory:
    `benchmarks/batches.py`)."""
    reward_ablation: RewardAblation = "none"
    """"zero" trains a blinded model: every reward in its context reads 0, so it can learn how
    the source's actions change over a history but not which of them paid (a control for
    in-context RL; evaluation and diagnose follow the checkpoint and zero them too)."""

    @model_validator(mode="before")
    @classmethod
    def _context_value(cls, data: Any) -> Any:
        # The flat fields are parsed here, once: the rest of icrl.ad sees only the typed value.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        mode = data.pop("context", "full")
        n_episodes, window = data.pop("n_episodes", None), data.pop("window", None)
        if not isinstance(mode, str):  # a Context value (Python callers, apps)
            if n_episodes is not None or window is not None:
                raise ValueError(
                    "data.context is given as a value; its size belongs in it, not in "
                    "data.n_episodes / data.window"
                )
            return {**data, "context": mode}
        if mode not in ("full", "episodes", "window"):
            raise ValueError(
                f"data.context={mode!r} is not a context mode; use 'full', 'episodes' (with "
                "data.n_episodes) or 'window' (with data.window)"
            )
        if mode == "episodes" and n_episodes is None:
            raise ValueError('data.context="episodes" needs data.n_episodes (e.g. 4)')
        if mode == "window" and window is None:
            raise ValueError('data.context="window" needs data.window, in transitions (e.g. 1000)')
        if mode != "episodes" and n_episodes is not None:
            raise ValueError(f'data.n_episodes is only used with context="episodes", not {mode!r}')
        if mode != "window" and window is not None:
            raise ValueError(f'data.window is only used with context="window", not {mode!r}')
        size = {"episodes": {"n_episodes": n_episodes}, "window": {"window": window}}
        return {**data, "context": {"kind": mode, **size.get(mode, {})}}

    @model_serializer(mode="wrap")
    def _flat_context(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out = handler(self)
        if "context" not in out:  # excluded by the caller
            return out
        # The flat fields in the context's place, so files keep their keys and order.
        flat: dict[str, Any] = {}
        for key, value in out.items():
            flat.update(self.context.flat() if key == "context" else {key: value})
        return flat


class OptimConfig(_Frozen):
    """AdamW with a linear warm-up then a cosine decay, and gradient-norm clipping."""

    lr: float = Field(3e-4, gt=0)
    """Peak learning rate (reached at the end of warm-up)."""
    weight_decay: float = Field(1e-4, ge=0)
    """AdamW decoupled weight decay (paper Table 5: 1e-4 / 2e-4 / 5e-4 / 5e-4)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    eps: float = Field(1e-8, gt=0)
    """AdamW epsilon."""
    warmup_steps: int = Field(100, ge=0)
    """Linear warm-up steps from 0 to lr."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """The cosine decays from lr to lr * min_lr_ratio at the last step."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value; None disables clipping."""


class TrainConfig(_Frozen):
    """Everything that determines a training run (saved resolved as config.json in the run dir)."""

    model: ADConfig = ADConfig()
    """The AD model."""
    data: DataConfig
    """Training data and context sampling."""
    optim: OptimConfig = OptimConfig()
    """Optimiser and schedule."""
    seed: int = 0
    """Seed of parameters, sampling and token noise; a run is a pure function of its config."""
    batch_size: int = Field(8, gt=0)
    """Global batch size in contexts (split evenly over DDP ranks)."""
    epochs: float | None = Field(None, gt=0)
    """Training length in epochs (one epoch = as many contexts as tile the data once)."""
    max_steps: int | None = Field(None, gt=0)
    """Training length in optimiser steps; exactly one of epochs / max_steps must be set."""
    token_noise_std: float = Field(0.01, ge=0)
    """σ of the isotropic Gaussian noise added to the normalised input tokens while training."""
    action_token_noise_std: float = Field(0.0, ge=0)
    """σ of further Gaussian noise on the context's previous-action inputs while training, in
    action units (added in quadrature to `token_noise_std`; the targets stay as recorded). 0:
    none (the paper's recipe). Above 0 (not the paper's recipe) the model cannot read its stage
    in the history from action deviations smaller than about this size, so its own imitation
    error in its context is not taken for exploration noise (HalfCheetahVel report, fifth
    window; PointGoal noise-distilled page)."""
    action_target: ActionTarget = "executed"
    """What the action head is trained toward. "executed": the recorded action (the paper's
    recipe). "denoised" (uniform noise-distilled histories only, not the paper's recipe): its
    known mean (1 - eps)·mu, with the Gaussian NLL averaged over the noise's known variance
    instead of sampled through the executed action, so the mean's targets carry no noise (at
    eps = 1 all are the action box's centre); an MSE head gets the same mean as target.
    Histories that cannot give them (learning runs, schema 1, Gaussian noise, episodes of
    different lengths) are refused before training. See icrl.ad._targets."""
    bf16: bool = True
    """bf16 autocast on CUDA (parameters stay fp32); ignored on CPU."""
    device: str = "auto"
    """"auto" (CUDA if available), "cpu", "cuda" or "cuda:N"; under torchrun: the local GPU."""
    checkpoint_every: int = Field(500, gt=0)
    """Save a checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = Field(3, gt=0)
    """Keep this many most recent checkpoints."""
    log_every: int = Field(10, gt=0)
    """Write metrics every this many steps."""
    tensorboard: bool = True
    """Also write metrics as TensorBoard events under <run_dir>/tb."""
    progress: bool = True
    """Show a progress bar (rank 0 only; TQDM_DISABLE=1 hides it)."""

    _device = field_validator("device")(_check_device)

    @model_validator(mode="after")
    def _length(self) -> TrainConfig:
        if (self.epochs is None) == (self.max_steps is None):
            raise ValueError(
                "set exactly one of epochs and max_steps "
                f"(got epochs={self.epochs}, max_steps={self.max_steps})"
            )
        return self


class EvalConfig(_Frozen):
    """In-context evaluation: the model acts on unseen test tasks with no gradient step."""

    n_tasks: int = Field(10, gt=0)
    """Number of canonical test tasks (icrl.metaenvs.test_tasks(family, n_tasks))."""
    episodes: int | None = Field(None, gt=0)
    """In-context episodes per rollout; None = as many as the training context covers."""
    method: str | None = None
    """Method name in the results CSV; None gives "AD-Mamba" / "AD-Transformer"."""
    seed: int = 0
    """Seed of the environments' reset noise (the same for every checkpoint)."""
    device: str = "auto"
    """"auto", "cpu", "cuda" or "cuda:N"."""
    bf16: bool = False
    """bf16 autocast on CUDA during evaluation (off: fp32 matches training predictions exactly)."""
    reward_ablation: RewardAblation | None = None
    """None: each checkpoint is evaluated as it was trained (its `data.reward_ablation`: a blinded
    model sees zero rewards, any other the real ones); "zero" / "none" override that for every
    checkpoint ("zero": a reward of 0 at every step of the context, the blinded control)."""
    sample: bool | None = None
    """Sample the action from a Gaussian head's distribution (None: sample iff the model has a
    Gaussian head; False: act with its mean). An MSE head has nothing to sample."""
    std_scale: float = Field(1.0, gt=0)
    """Multiplies a Gaussian head's std when sampling (a temperature on its exploration; 1: the
    width it was trained to predict). Below 1 narrows the noise the model puts into its own
    context (HalfCheetahVel report: its predicted std exceeds the source's noise 2-3x). Needs
    sampled actions: an error with `sample=False`."""
    sample_noise: SampleNoise = "gaussian"
    """Shape of the noise a sampled Gaussian head adds to its mean, scaled by its std: "gaussian"
    (its own likelihood) or "uniform" (on [-sqrt(3), sqrt(3)] x std: the same mean and std).
    "uniform" redraws the blend (1 - eps) mu + eps u of uniform noise-distilled histories
    (`icrl.histories.NoiseDistillation`, noise "uniform"), which the head fits in two moments
    only, so the model's own actions in its context look like the histories' (not the paper's
    recipe). Needs sampled actions: an error with `sample=False`."""
    cuda_graph: bool = True
    """On CUDA, replay the backbone's one-token step as a CUDA graph (single-token steps are bound
    by kernel launches); ignored on CPU. Off: plain eager `step`."""
    batch_seeds: bool = True
    """Roll out every checkpoint (training seed) in one loop over one vector env of tasks × seeds,
    so that all their envs step together, instead of one rollout per checkpoint. Each model still
    acts on its own slice of envs, with the same env seeds and sampling stream as alone: the
    returns are those of the one-by-one rollouts (tested). Checkpoints that act by another rule
    (sample or mean) or see rewards otherwise (reward_ablation) go into separate loops."""
    asynchronous: bool = True
    """Run the test tasks' environments in subprocesses (gymnasium AsyncVectorEnv)."""
    reference_episodes: int = Field(3, ge=0)
    """Episodes per test task for the zero-action and random-policy reference lines (0: skip)."""
    histories: Path | None = None
    """Histories file for the source algorithm's curve; None takes the checkpoint's first file."""
    progress: bool = True
    """Show a progress bar."""

    _device = field_validator("device")(_check_device)

    @model_validator(mode="after")
    def _std_scale(self) -> EvalConfig:
        if self.std_scale != 1.0 and self.sample is False:
            raise ValueError(
                f"std_scale={self.std_scale} scales the sampling noise, but sample=false acts "
                "with the mean; drop std_scale or sample"
            )
        if self.sample_noise != "gaussian" and self.sample is False:
            raise ValueError(
                f"sample_noise={self.sample_noise!r} shapes the sampling noise, but sample=false "
                "acts with the mean; drop sample_noise or sample"
            )
        return self


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a dict (validated later by the config class):
    icrl.histories.runtime.read_config_file, raising ConfigError."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return runtime.read_config_file(path, label="config file")
    except runtime.ConfigFileError as err:
        raise ConfigError(str(err)) from None


def apply_overrides(base: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply "a.b=value" overrides to a nested dict; values are parsed as JSON when they can be
    (icrl.histories.runtime.apply_sets, raising ConfigError)."""
    try:
        return runtime.apply_sets(base, overrides, label="override")
    except runtime.SetError as err:
        raise ConfigError(str(err)) from None


def validate(cls: type[BaseModel], data: dict[str, Any], source: str) -> Any:
    """Validate `data` as `cls`, turning pydantic's error into a ConfigError naming the source."""
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        head = f"invalid {cls.__name__} from {source}:"
        text = runtime.describe_validation_error(err, head=head, layout="lines", top="(top level)")
        raise ConfigError(text) from None
