"""YAML reading and writing with YAML 1.2 numbers: `lr: 1e-3` is a float, not the string "1e-3".

Reading is bounded: aliases may not expand a document beyond MAX_NODES values or MAX_TEXT characters (a
"billion laughs" of a few hundred bytes would otherwise become gigabytes once validated or copied), an alias
may not contain itself, and a key given twice in one mapping is an error rather than "the last one wins".
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_NODES = 100_000
"""Values (scalars, lists, mappings) a document may hold once its aliases are expanded."""
MAX_TEXT = 10_000_000
"""Characters of scalar text a document may hold once its aliases are expanded."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlRefused(yaml.MarkedYAMLError):
    """Well-formed YAML that we do not read: an alias bomb, a recursive alias, a duplicate key."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_expanded_size(root: Node) -> None:
    """Raise YamlRefused when root, with every alias expanded, is too big or contains itself.

    Aliases compose to the same node object, so sizes are memoised by node: the cost is the document's
    length, not its expanded size."""
    sizes: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            nodes, text = 1, 0
            for child in _children(node):
                child_nodes, child_text = sizes[id(child)]
                nodes, text = nodes + child_nodes, text + child_text
            if nodes > MAX_NODES or text > MAX_TEXT:
                raise YamlRefused(f"aliases expand the YAML beyond {MAX_NODES:,} values or {MAX_TEXT:,} "
                                  f"characters (at line {node.start_mark.line + 1}); refused", node.start_mark)
            sizes[key] = (nodes, text)
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise YamlRefused(f"the YAML anchor at line {node.start_mark.line + 1} is used inside itself; refused",
                              node.start_mark)
        if isinstance(node, ScalarNode):
            sizes[key] = (1, len(node.value))
            continue
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._keys_checked: set[int] = set()

    def get_single_node(self) -> Node | None:
        node = super().get_single_node()
        if node is not None:
            _check_expanded_size(node)
        return node

    def flatten_mapping(self, node: MappingNode) -> None:
        # Every mapping passes here before its merges (`<<: *base`) are folded in; check the keys as written
        # (a merged key may be overridden, as YAML intends), once: folding rewrites node.value.
        if id(node) not in self._keys_checked:
            self._keys_checked.add(id(node))
            self._refuse_duplicate_keys(node)
        super().flatten_mapping(node)

    def _refuse_duplicate_keys(self, node: MappingNode) -> None:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # an unhashable key: the constructor reports it
            if duplicate:
                mark = key_node.start_mark
                raise YamlRefused(f"duplicate key {_short(key)} at line {mark.line + 1}", mark)
            seen.add(key)


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


def _construct_int(loader: _Loader, node: Node) -> int:
    """An integer, or YamlRefused for one Python will not read (more digits than sys.get_int_max_str_digits())."""
    try:
        return yaml.SafeLoader.construct_yaml_int(loader, node)
    except ValueError:
        raise YamlRefused(f"a number of {len(str(node.value))} digits at line {node.start_mark.line + 1}; "
                          "numbers here are far shorter", node.start_mark) from None


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_yaml(text: str) -> Any:
    """Parse YAML text safely (no Python objects), reading 1e-3 as a number. Raises yaml.YAMLError, or
    YamlRefused (one of them) for an alias bomb, a recursive alias or a duplicate key."""
    return yaml.load(text, Loader=_Loader)


def parse_scalar(text: str) -> Any:
    """Read one command-line value the way a preset would read it (`0.01` -> float, `true` -> bool)."""
    if text.strip() == "":
        return text
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


class UnreadableFile(Exception):
    """A file that read_regular_file refuses; str() is the reason, without the file's name."""


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def read_regular_file(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes, or UnreadableFile.

    Opened without blocking (a FIFO cannot hold the open), checked on the open file (fstat: no race with a
    rename), and read at most max_bytes + 1 bytes: st_size may lie (/proc, a file still growing)."""
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except ValueError:
        raise UnreadableFile("the path holds a NUL byte") from None
    except FileNotFoundError:
        raise UnreadableFile("no such file") from None
    except IsADirectoryError:
        raise UnreadableFile("is a folder, not a file") from None
    except OSError as error:
        if error.errno == errno.ENXIO:  # a socket, or a device with nothing behind it
            raise UnreadableFile("not a regular file") from None
        raise UnreadableFile(f"cannot read: {error.strerror or error}") from None
    try:
        mode = os.fstat(descriptor).st_mode
        if stat.S_ISDIR(mode):
            raise UnreadableFile("is a folder, not a file")
        if not stat.S_ISREG(mode):
            raise UnreadableFile("not a regular file")
        data = _read_at_most(descriptor, max_bytes + 1)
    except OSError as error:
        raise UnreadableFile(f"cannot read: {error.strerror or error}") from None
    finally:
        os.close(descriptor)
    if len(data) > max_bytes:
        raise UnreadableFile(f"is larger than {max_bytes // 1000:,} kB")
    return data


def _read_at_most(descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    while limit > 0:
        chunk = os.read(descriptor, min(limit, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
