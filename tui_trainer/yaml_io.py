"""YAML reading and writing with YAML 1.2 numbers: `lr: 1e-3` is a float, not the string "1e-3"."""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    pass


# PyYAML follows YAML 1.1, whose float pattern needs a dot ("1.0e-3"); YAML 1.2 accepts "1e-3".
_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """Parse YAML text safely (no Python objects), reading 1e-3 as a number."""
    return yaml.load(text, Loader=_Loader)


def parse_scalar(text: str) -> Any:
    """Read one command-line value the way a preset would read it (`0.01` -> float, `true` -> bool)."""
    if text.strip() == "":
        return text
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
