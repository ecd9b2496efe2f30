"""Hugging Face transformers' vision models as ``hf:`` references (an optional extra: ``pip install
"archbench[hf]"``). Nothing is ever downloaded and no weights are loaded: a model is built from its config.

==========================  ===========================================================================
``hf:vit``                  a ``model_type``: its default config (``AutoConfig.for_model``), with 1000 labels
``hf:google/vit-base-...``  ``config.json`` of a model in the local Hugging Face cache (``HF_HUB_CACHE``,
                            else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``)
``hf:./folder``             ``config.json`` in a folder (``hf:/abs/folder``, ``hf:~/folder`` likewise)
==========================  ===========================================================================

The builder's arguments (``--set``, a study's ``args``) override config fields: ``image_size=384``,
``num_hidden_layers=2``; a name that is not a field of the config is an error (transformers would keep it
silently). A model type is built as the class ``AutoModelForImageClassification`` maps it to when
transformers has one, else as ``AutoModel``'s (the bare backbone); a ``config.json`` that names its
``architectures`` is built as that class. The default input is the config's ``num_channels`` x ``image_size``, and the
forward is called with ``pixel_values=``. Importing this module imports neither torch nor transformers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import functools
import importlib.util
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from archbench.catalog.spec import ModelSpec
from archbench.errors import SpecError, quoted
from archbench.parsing import InputShape

PREFIX = "hf:"
FAMILY = "transformers"
SOURCE = "hf"
INSTALL = 'pip install "archbench[hf]"'
PIXEL_VALUES = "archbench.catalog.models.hf_zoo:pixel_values"  # the input factory every hf: model gets
IMAGENET_CLASSES = 1000  # a model type's classifier, as torchvision's and timm's models (transformers' default: 2)
_DEFAULT_SIZE, _DEFAULT_CHANNELS = 224, 3
_TYPE = re.compile(r"^[A-Za-z0-9][\w-]*$")  # vit, data2vec-vision, dinov2_with_registers
_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")  # org/name, as the Hub spells repository ids
_FORMS = ("hf:MODEL_TYPE (hf:vit, hf:convnext), hf:ORG/NAME (a model in the local Hugging Face cache) or "
          "hf:PATH (a folder holding a config.json: hf:./my-vit)")


@dataclasses.dataclass(frozen=True)
class Target:
    """What follows ``hf:``: a model type, a repository id (looked up in the cache) or a folder (absolute);
    ``given`` as written (what messages quote)."""

    kind: Literal["type", "repo", "folder"]
    name: str
    given: str = ""


def parse_target(text: str, base_dir: Path | None = None) -> Target:
    """Which of the three forms ``text`` is (imports nothing). A path (``./``, ``../``, ``/``, ``~``) or an
    existing folder is a folder, as ``from_pretrained`` decides; ``a/b`` a repository; a word a model type."""
    from archbench.catalog.grammar import ModelReferenceError

    text = text.strip()
    if text.startswith((".", "/", "~", os.sep)) or _is_folder(text, base_dir):
        path = Path(text).expanduser()
        path = path if path.is_absolute() else Path(base_dir or Path.cwd()).absolute() / path
        return Target("folder", os.path.normpath(path), text)
    if _REPO.match(text):
        return Target("repo", text, text)
    if _TYPE.match(text):
        return Target("type", text, text)
    raise ModelReferenceError(f"{quoted(PREFIX + text)} is not a Hugging Face model reference: expected {_FORMS}.")


def _is_folder(text: str, base_dir: Path | None) -> bool:
    return "/" in text and (Path(base_dir or Path.cwd()) / text).is_dir()


def absolute(text: str, base_dir: Path | None = None) -> str:
    """The reference with a folder made absolute (relative to ``base_dir``, default the working directory),
    so it builds the same model from anywhere (a worker, a spec file's folder)."""
    target = parse_target(text, base_dir)
    return PREFIX + target.name


def installed() -> bool:
    return importlib.util.find_spec("transformers") is not None


@contextlib.contextmanager
def _transformers() -> Iterator[Any]:
    """transformers, offline (``HF_HUB_OFFLINE=1`` while it works: nothing is fetched, whatever the config
    says) and quiet (its warnings are about weights and tokens archbench does not use; the library never
    prints)."""
    from archbench.catalog.grammar import ModelReferenceError

    saved = {name: os.environ.get(name) for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({name: "1" for name in saved})
    try:
        try:
            import transformers
        except ImportError as exc:
            if exc.name == "transformers":
                raise ModelReferenceError(f"transformers is not installed: {INSTALL}") from None
            raise ModelReferenceError(f"transformers cannot be imported ({type(exc).__name__}: {exc}): {INSTALL} "
                                      "installs what it needs.") from None
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            yield transformers
        finally:
            transformers.logging.set_verbosity(verbosity)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ------------------------------------------------------------------------------------------- the cache


def hub_cache() -> tuple[Path, str]:
    """The Hugging Face cache folder and what chose it, by huggingface_hub's precedence (read here from the
    environment at each call, not from ``huggingface_hub.constants``, which fixes it at import)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser(), variable
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub", "HF_HOME"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub", "XDG_CACHE_HOME"
    return Path("~/.cache/huggingface/hub").expanduser(), "the default"


def cached_snapshot(repo: str) -> Path:
    """The snapshot folder holding ``repo``'s ``config.json`` in the cache: the one ``refs/main`` points at,
    else the newest that has one. :class:`ModelReferenceError` naming the folder looked in otherwise."""
    from archbench.catalog.grammar import ModelReferenceError

    cache, chosen_by = hub_cache()
    folder = cache / ("models--" + repo.replace("/", "--"))
    snapshots = folder / "snapshots"
    main = folder / "refs" / "main"
    if main.is_file() and (snapshots / main.read_text().strip() / "config.json").is_file():
        return snapshots / main.read_text().strip()
    found = sorted((s for s in snapshots.glob("*") if (s / "config.json").is_file()), key=lambda s: s.stat().st_mtime)
    if found:
        return found[-1]
    what = "has no snapshot with a config.json" if folder.is_dir() else "is not there"
    raise ModelReferenceError(
        f"{quoted(PREFIX + repo)}: no config.json for {quoted(repo)} in the local Hugging Face cache: {folder} {what} (cache "
        f"{cache}, from {chosen_by}; HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub). archbench "
        f"never downloads: fetch it first (hf download {repo} config.json), point HF_HUB_CACHE or HF_HOME at "
        f"the cache that holds it, or name a folder with its config.json ({PREFIX}./folder).")


# ------------------------------------------------------------------------------------------- configs


def load_config(target: Target, overrides: Mapping[str, Any] | None = None) -> Any:
    """The ``PretrainedConfig`` of ``target`` with ``overrides`` (config fields) applied; a model type's
    classifier gets 1000 labels unless ``num_labels`` is given."""
    overrides = dict(overrides or {})
    with _transformers() as transformers:
        if target.kind == "type":
            model_type = _known_type(transformers, target.name)
            base = transformers.AutoConfig.for_model(model_type)
            if _has_classifier(model_type):
                overrides = {"num_labels": IMAGENET_CLASSES, **overrides}
            return _with_overrides(transformers, target, base, overrides)
        folder = Path(target.name) if target.kind == "folder" else cached_snapshot(target.name)
        base = _folder_config(transformers, target, folder)
        return _with_overrides(transformers, target, base, overrides) if overrides else base


def _known_type(transformers: Any, name: str) -> str:
    from archbench.catalog.grammar import ModelReferenceError

    known = transformers.models.auto.configuration_auto.CONFIG_MAPPING_NAMES
    if name in known:
        return name
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(PREFIX + c for c in close)}?" if close else ""
    raise ModelReferenceError(f"transformers {transformers.__version__} has no model type {quoted(name)}.{hint} "
                              f"`archbench list --source hf` lists the vision ones; {PREFIX}ORG/NAME names a model "
                              "in the local Hugging Face cache.")


def _folder_config(transformers: Any, target: Target, folder: Path) -> Any:
    from archbench.catalog.grammar import ModelReferenceError

    where = f"{quoted(PREFIX + target.given)}" + (f" ({folder})" if str(folder) != target.given else "")
    if not folder.is_dir():
        raise ModelReferenceError(f"{where}: no such folder (from the current directory {os.getcwd()}).")
    if not (folder / "config.json").is_file():
        raise ModelReferenceError(f"{where}: the folder has no config.json: {PREFIX}PATH names a folder holding a "
                                  "Hugging Face model's config.json.")
    try:
        return transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a config transformers does not know, or bad JSON
        raise ModelReferenceError(f"{where}: transformers {transformers.__version__} cannot read its config.json: "
                                  f"{_first_line(exc)}") from None


def _with_overrides(transformers: Any, target: Target, base: Any, overrides: Mapping[str, Any]) -> Any:
    """``base`` made again with ``overrides``: through the config class's constructor, so the fields it
    derives (Swin's ``hidden_size`` from ``embed_dim``) follow; names that are not fields are refused."""
    _check_fields(transformers, base, overrides)
    # a model type from its defaults plus the overrides only; a config.json's fields (but the private ones a
    # constructor derives, e.g. a backbone's _out_features) under the overrides
    fields = {} if target.kind == "type" else {k: v for k, v in _fields(base).items() if not k.startswith("_")}
    try:
        return transformers.AutoConfig.for_model(base.model_type, **{**fields, **overrides})
    except (TypeError, ValueError) as exc:
        settings = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise SpecError(f"its {type(base).__name__} does not take {settings}: "
                        f"{_first_line(exc)}") from None


def _fields(config: Any) -> dict[str, Any]:
    """The values a config's constructor takes (transformers >= 5: its dataclass fields; before: to_dict)."""
    if dataclasses.is_dataclass(config):
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
    return {k: v for k, v in config.to_dict().items() if k not in ("model_type", "transformers_version")}


def _check_fields(transformers: Any, config: Any, overrides: Mapping[str, Any]) -> None:
    valid = {*_fields(config), *config.to_dict(), *getattr(config, "attribute_map", {}), "num_labels"}
    for key in overrides:
        if key in valid:
            continue
        own = sorted(k for k in _fields(config) if not k.startswith("_") and k not in _common_fields(transformers))
        close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.75)
        guess = f" Did you mean '{close[0]}'?" if close else ""
        raise SpecError(f"{quoted(key)} is not a field of {type(config).__name__} (transformers {transformers.__version__})."
                        f"{guess} Its fields: {', '.join(own)} (and num_labels, as every config).")


@functools.cache
def _common_fields(transformers: Any) -> frozenset[str]:
    """The fields every config has (``PretrainedConfig``'s): left out of the list an unknown field shows."""
    return frozenset(_fields(transformers.PretrainedConfig()))


def _has_classifier(model_type: str) -> bool:
    """Whether transformers has an image-classification model for ``model_type`` (reads its table; the
    module imports torch)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    return model_type in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES


def image_input(config: Any) -> InputShape | None:
    """``num_channels`` x ``image_size`` (an int or a pair) of the config, or of its ``vision_config``
    (CLIP-like); a missing one defaults to 3 channels or 224x224; ``None`` when the config states neither
    (not an image model)."""
    for part in (config, getattr(config, "vision_config", None)):
        if part is not None and (hasattr(part, "image_size") or hasattr(part, "num_channels")):
            return input_of(getattr(part, "num_channels", _DEFAULT_CHANNELS), getattr(part, "image_size", _DEFAULT_SIZE))
    return None


def input_of(channels: Any, size: Any) -> InputShape | None:
    """``(C, H, W)`` from a config's ``num_channels`` and ``image_size`` (an int or a pair); ``None`` when
    they are not positive integers."""
    size = (size, size) if isinstance(size, int) else tuple(size) if isinstance(size, (list, tuple)) else ()
    shape = (channels, *size)
    if len(shape) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        return None
    return shape  # type: ignore[return-value]


def input_after(input: InputShape, args: Mapping[str, Any]) -> InputShape:
    """The default input once ``args`` (config fields) are set: ``image_size`` and ``num_channels`` move it
    (pure data, no import: a spec's arguments are merged without building anything)."""
    if "image_size" not in args and "num_channels" not in args:
        return input
    return input_of(args.get("num_channels", input[0]), args.get("image_size", list(input[1:]))) or input


# ------------------------------------------------------------------------------------------- models


def spec(text: str, name: str | None = None, base_dir: Path | None = None) -> ModelSpec:
    """The spec of ``hf:<text>`` (listed as ``name``): its default input read from the config now, so a
    reference that names nothing fails before anything runs."""
    from archbench.catalog.grammar import ModelReferenceError

    target = parse_target(text, base_dir)
    config = load_config(target)
    shape = image_input(config)
    if shape is None:
        raise ModelReferenceError(f"{quoted(PREFIX + text)}: {type(config).__name__} states no image_size or num_channels: "
                                  f"{PREFIX} builds image models (the forward takes pixel_values).")
    with _transformers() as transformers:
        description = _description(transformers, target, config)
    return ModelSpec(name=name or PREFIX + text, family=FAMILY, input=shape, description=description,
                     source=SOURCE, builder=PREFIX + target.name, inputs=PIXEL_VALUES)


def _description(transformers: Any, target: Target, config: Any) -> str:
    built = _model_class(transformers, target, config).__name__
    labels = f", {config.num_labels} classes" if built.endswith("ForImageClassification") else ""
    where = {"type": "default config", "repo": f"config.json of {target.name} (cache)",
             "folder": "config.json in the folder"}[target.kind] + labels
    return f"{built} ({where}), not pretrained, transformers {transformers.__version__}"


def _model_class(transformers: Any, target: Target, config: Any) -> type:
    """The class built: the one a ``config.json`` names in ``architectures`` (its checkpoint's), else the one
    ``AutoModelForImageClassification`` maps the type to (the first, where it maps to several), else
    ``AutoModel``'s (the bare backbone). Looked up here rather than through ``Auto*.from_config``, which fails
    on a type with several classes (DeiT) when the config names no architecture (transformers 5.25)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, MODEL_MAPPING_NAMES

    names = list(getattr(config, "architectures", None) or ()) if target.kind != "type" else []
    for table in (MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, MODEL_MAPPING_NAMES):
        if config.model_type in table:
            entry = table[config.model_type]
            names.append(entry if isinstance(entry, str) else entry[0])
    for name in names:
        found = _transformers_class(transformers, name)
        if found is not None:
            return found
    from archbench.catalog.grammar import ModelReferenceError

    raise ModelReferenceError(f"{quoted(PREFIX + target.given)}: transformers {transformers.__version__} has no model class "
                              f"for {type(config).__name__} (model type {quoted(config.model_type)}).")


def _transformers_class(transformers: Any, name: str) -> type | None:
    try:
        found = getattr(transformers, name)
    except Exception:  # noqa: BLE001 - transformers' lazy module raises more than AttributeError: not a class
        return None
    return found if isinstance(found, type) and issubclass(found, transformers.PreTrainedModel) else None


def builder(text: str) -> Callable[..., Any]:
    """``build(**config_fields)`` for ``hf:<text>`` (the fields override the config's)."""
    return functools.partial(build, text)


def build(text: str, **overrides: Any) -> Any:
    """A fresh, randomly initialised model of ``hf:<text>``: ``ModelClass(config)``, as transformers documents
    building a model from a configuration."""
    target = parse_target(text)
    config = load_config(target, overrides)
    with _transformers() as transformers:
        model_class = _model_class(transformers, target, config)
        try:
            return model_class(config)
        except ImportError as exc:  # e.g. DiNAT needs natten
            from archbench.catalog.grammar import ModelReferenceError

            reason = _first_line(exc).split(". ")[0].removesuffix(".")  # its first sentence names the package
            raise ModelReferenceError(f"{model_class.__name__} cannot be built here: {reason}.") from None


def pixel_values(batch: int, input_shape: InputShape, dtype: str, device: str) -> dict[str, Any]:
    """The input factory of every ``hf:`` model: ``{"pixel_values": images}``, fixed random images (seed 0)
    in fp32 as the sweep's own (``timing.step.make_images``, which the catalog, below it, does not import)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    return {"pixel_values": torch.randn(batch, *input_shape, generator=generator).to(device)}


# ------------------------------------------------------------------------------------------- listing


def listing(pattern: str | None = None) -> list[ModelSpec]:
    """The model types transformers has an image-classification model for (matching ``pattern``, e.g.
    ``vit*`` or ``hf:vit*``) whose config states an image input; parameters are not counted here."""
    with _transformers():
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

        types = [t for t in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
                 if not pattern or fnmatch.fnmatchcase(t, pattern.removeprefix(PREFIX))]
    specs = []
    for model_type in sorted(types):
        with contextlib.suppress(SpecError):  # e.g. timm_wrapper, which needs a timm architecture to be named
            specs.append(spec(model_type))
    return specs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
