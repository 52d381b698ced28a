"""The kit's facts: models (models/*.yaml), GPUs and instance types (servekit/data/).

Loading validates every file; a broken file is a UserError naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from servekit.errors import UserError, from_validation_error
from servekit.spec import Frozen, GpuSpec, InstanceSpec, ModelSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"
DATA_DIR = Path(__file__).resolve().parent / "data"


class _GpuFile(Frozen):
    sources: dict[str, object]
    gpus: list[GpuSpec]


class _InstanceFile(Frozen):
    sources: dict[str, object]
    instances: list[InstanceSpec]


def read_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError("file not found", file=path) from None
    except IsADirectoryError:
        raise UserError("is a directory, not a YAML file", file=path) from None
    except PermissionError:
        raise UserError("not readable (permission denied)", file=path) from None
    except UnicodeDecodeError as e:
        raise UserError(f"not valid YAML: not UTF-8 text ({e.reason} at byte {e.start})", file=path) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise UserError(f"not valid YAML: {getattr(e, 'problem', e)}", file=path, path=where) from None


T = TypeVar("T", bound=BaseModel)


def validate_file(cls: type[T], data: object, path: Path) -> T:
    """Validate parsed YAML against a model; a failure names the file and the dotted path."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise from_validation_error(e, file=path, model=cls) from None


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelSpec]
    gpus: dict[str, GpuSpec]
    instances: dict[str, InstanceSpec]
    model_files: dict[str, Path] = field(default_factory=dict)

    def model(self, model_id: str) -> ModelSpec:
        try:
            return self.models[model_id]
        except KeyError:
            raise UserError(
                "unknown model", given=model_id, allowed=", ".join(sorted(self.models))
            ) from None

    def gpu_of(self, instance: InstanceSpec) -> GpuSpec:
        return self.gpus[instance.gpu]


def load_models(models_dir: Path = MODELS_DIR) -> tuple[dict[str, ModelSpec], dict[str, Path]]:
    models: dict[str, ModelSpec] = {}
    files: dict[str, Path] = {}
    for path in sorted(models_dir.glob("*.yaml")):
        spec = validate_file(ModelSpec, read_yaml(path), path)
        if spec.id != path.stem:
            raise UserError("model id must equal the file name", file=path, path="id", given=spec.id,
                            allowed=path.stem)
        models[spec.id] = spec
        files[spec.id] = path
    return models, files


def load_catalog(models_dir: Path = MODELS_DIR, data_dir: Path = DATA_DIR) -> Catalog:
    models, files = load_models(models_dir)
    gpu_path = data_dir / "gpus.yaml"
    gpus = {g.id: g for g in validate_file(_GpuFile, read_yaml(gpu_path), gpu_path).gpus}
    inst_path = data_dir / "instances.yaml"
    instances = {i.type: i for i in validate_file(_InstanceFile, read_yaml(inst_path), inst_path).instances}
    for i in instances.values():
        if i.gpu not in gpus:
            raise UserError("unknown GPU", file=inst_path, path=f"instances[{i.type}].gpu", given=i.gpu,
                            allowed=", ".join(gpus))
    return Catalog(models=models, gpus=gpus, instances=instances, model_files=files)


@cache
def default_catalog() -> Catalog:
    """The catalog shipped in the repository (cached: it is read-only)."""
    return load_catalog()
