"""The daemon's configuration: strict, explained, and refused when unsafe.

Unknown keys are errors (a typo must not silently fall back to a default), and paths
that would make the daemon eat its own output are refused at start-up.
"""

from __future__ import annotations


import grp
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from nstd.errors import ConfigError, ParamError
from nstd.params import resolve, unknown_key_error
from nstd.images import FORMATS
from nstd.untrusted import SCAN_BYTES, SCAN_DEPTH, SCAN_ENTRIES, YAML_BYTES, short


@dataclass(frozen=True)
class Paths:
    inbox: Path
    outbox: Path
    failed: Path
    archive: Path | None
    state: Path
    delete_originals: bool = False


@dataclass(frozen=True)
class Limits:
    size: int = 4096
    iterations: int = 5000
    input_pixels: int = 50_000_000
    input_bytes: int = 200_000_000
    yaml_bytes: int = YAML_BYTES
    scan_entries: int = SCAN_ENTRIES  # inbox entries one scan looks at
    scan_depth: int = SCAN_DEPTH  # folders deep a scan goes
    scan_bytes: int = SCAN_BYTES  # job YAML a scan reads anew
    memory: int | None = None  # bytes the daemon may use; None: the machine's (or cgroup's) memory
    video_seconds: float = 600.0  # seconds of a clip one job may stylize
    frames: int = 15_000  # frames of a clip one job may stylize


@dataclass(frozen=True)
class Watch:
    mode: str = "auto"  # auto | events | polling
    settle_seconds: float = 5.0
    rescan_seconds: float = 60.0
    poll_interval: float = 2.0
    incomplete_timeout: float = 3600.0


@dataclass(frozen=True)
class Output:
    format: str = "png"
    umask: int = 0o002
    file_mode: int | None = None
    group: str | None = None
    preview_every: int = 0


@dataclass(frozen=True)
class Service:
    checkpoint_every: int = 20
    heartbeat_seconds: float = 5.0
    lease_timeout: float = 120.0
    retries: int = 3
    retry_backoff: float = 30.0


@dataclass(frozen=True)
class Queue:
    backend: str = "local"  # local: daemons coordinate through the share; redis: through a Redis server
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "nstd"  # Redis key prefix: one per fleet sharing a server


@dataclass(frozen=True)
class EngineOptions:
    compute: str = "auto"  # auto | fp32 | bf16 | fp16: the convolutions' number format
    compiler: str = "auto"  # auto | xla | graph


@dataclass(frozen=True)
class Http:
    listen: str | None = None  # host:port of the web page, /metrics and health checks; None: off
    token: str | None = None  # required on any address but loopback (Authorization: Bearer, or ?token=)


@dataclass(frozen=True)
class Retention:
    days: float | None = None  # remove logs, reports, archived and failed jobs older than this
    keep: int | None = None  # and all but the newest this many of each


@dataclass(frozen=True)
class Config:
    paths: Paths
    weights: str = "imagenet"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    limits: Limits = Limits()
    watch: Watch = Watch()
    output: Output = Output()
    service: Service = Service()
    retention: Retention = Retention()
    queue: Queue = Queue()
    http: Http = Http()
    engine: EngineOptions = EngineOptions()
    source: str = ""


SECTIONS = {"limits": Limits, "watch": Watch, "output": Output, "service": Service, "retention": Retention,
            "queue": Queue, "http": Http, "engine": EngineOptions}
TOP_KEYS = ("paths", "weights", "defaults", "limits", "watch", "output", "service", "retention", "queue", "http",
            "engine")
PATH_KEYS = ("inbox", "outbox", "failed", "archive", "state", "delete_originals")


#: Every number in the config: (integer?, lowest, highest, may be null). One table, used by
#: ``nstd check`` and by SIGHUP alike, so a config that passes one never breaks the other.
NUMBERS: dict[str, tuple[bool, float, float, bool]] = {
    "limits.size": (True, 16, 65536, False),
    "limits.iterations": (True, 1, 10_000_000, False),
    "limits.input_pixels": (True, 1, 10**11, False),
    "limits.input_bytes": (True, 1, 2**50, False),
    "limits.yaml_bytes": (True, 64, 2**24, False),
    "limits.scan_entries": (True, 100, 10**7, False),
    "limits.scan_depth": (True, 1, 64, False),
    "limits.scan_bytes": (True, 2**16, 2**34, False),
    "limits.memory": (True, 2**26, 2**50, True),
    "limits.video_seconds": (False, 0.01, 10**7, False),
    "limits.frames": (True, 1, 10**8, False),
    "watch.settle_seconds": (False, 0, 86400, False),
    "watch.rescan_seconds": (False, 1, 86400, False),
    "watch.poll_interval": (False, 0.1, 3600, False),
    "watch.incomplete_timeout": (False, 1, 10**7, False),
    "output.umask": (True, 0, 0o777, False),
    "output.file_mode": (True, 0, 0o7777, True),
    "output.preview_every": (True, 0, 10**7, False),
    "service.checkpoint_every": (True, 0, 10**7, False),
    "service.heartbeat_seconds": (False, 0.1, 3600, False),
    "service.lease_timeout": (False, 1, 10**7, False),
    "service.retries": (True, 0, 100, False),
    "service.retry_backoff": (False, 0, 86400, False),
    "retention.days": (False, 0.001, 100_000, True),
    "retention.keep": (True, 1, 10**9, True),
}
CHOICES = {"watch.mode": ("auto", "events", "polling"), "queue.backend": ("local", "redis"),
           "engine.compute": ("auto", "fp32", "bf16", "fp16"), "engine.compiler": ("auto", "xla", "graph"),
           "output.format": tuple(sorted({ext.lstrip(".") for ext in FORMATS}))}


def _number(name: str, value: Any, where: str) -> Any:
    integer, lo, hi, nullable = NUMBERS[name]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{where}: must be {kind}{' or null' if nullable else ''}, got {short(value)}.")
    if not (lo <= value <= hi) or value != value:
        shown = (oct(lo), oct(hi)) if name.endswith(("umask", "file_mode")) else (lo, hi)
        raise ConfigError(f"{where}: {short(value)} is out of range; allowed {shown[0]} to {shown[1]}.")
    return value


def _section(cls: type, raw: Any, where: str, section: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping of keys, got {type(raw).__name__}.")
    known = {f.name: f for f in fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(str(unknown_key_error(str(key), list(known), where)))
        name, at = f"{section}.{key}", f"{where}.{key}"
        if key == "memory" and isinstance(value, str):
            value = parse_bytes(value, at)
        if key in ("umask", "file_mode") and isinstance(value, str):
            try:
                value = int(value, 8)
            except ValueError:
                raise ConfigError(f"{at}: {short(value)} is not an octal mode like '0640'.") from None
        if name in CHOICES:
            if value not in CHOICES[name]:
                raise ConfigError(f"{at}: {short(value)} is not allowed; choose {', '.join(CHOICES[name])}.")
        elif name == "queue.url":
            if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(f"{at}: must be a Redis URL like redis://host:6379/0, got {short(value)}.")
        elif name == "queue.prefix":
            if not isinstance(value, str) or not value.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"{at}: must be letters, digits, - or _, got {short(value)}.")
        elif name == "http.listen":
            value = check_listen(value, at)
        elif name == "http.token":
            if value is not None and (not isinstance(value, str) or len(value) < 16):
                raise ConfigError(f"{at}: must be a secret of at least 16 characters (e.g. openssl rand -hex 16).")
        elif name == "output.group":
            if value is not None:
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"{at}: must be a group name, got {short(value)}.")
                try:
                    grp.getgrnam(value)
                except KeyError:
                    raise ConfigError(f"{at}: there is no group {value!r} on this machine; create it or "
                                      "name an existing one.") from None
        else:
            value = _number(name, value, at)
        values[key] = value
    section_obj = cls(**values)
    if section == "http" and section_obj.token is None and os.environ.get("NSTD_HTTP_TOKEN"):
        section_obj = replace(section_obj, token=_env_token(os.environ["NSTD_HTTP_TOKEN"], where))
    if section == "http" and section_obj.listen and not section_obj.token and \
            section_obj.listen.rsplit(":", 1)[0].strip("[]") not in LOOPBACK:
        raise ConfigError(f"{where}.listen is {section_obj.listen}, which other machines can reach: set "
                          f"{where}.token too (and put a TLS reverse proxy in front; see README), or listen on "
                          "127.0.0.1.")
    if section == "service" and section_obj.lease_timeout < 2 * section_obj.heartbeat_seconds:
        raise ConfigError(f"{where}.lease_timeout ({section_obj.lease_timeout}) must be at least twice "
                          f"heartbeat_seconds ({section_obj.heartbeat_seconds}), or live jobs would be taken over.")
    return section_obj


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _env_token(value: str, where: str) -> str:
    """http.token from $NSTD_HTTP_TOKEN (containers), held to the same rule as the config's."""
    if len(value) < 16:
        raise ConfigError(f"{where}: NSTD_HTTP_TOKEN must be a secret of at least 16 characters.")
    return value


def check_listen(value: Any, where: str) -> str | None:
    """``host:port`` (IPv6 in brackets), or null for no web server."""
    if value is None:
        return None
    host, _, port = str(value).rpartition(":")
    if not isinstance(value, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: must be host:port like 127.0.0.1:8750, got {short(value)}.")
    return value


def parse_bytes(text: str, where: str) -> int:
    """'16G', '512M', '2048K' or a plain number of bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except (ValueError, IndexError):
        raise ConfigError(f"{where}: {text!r} is not a size like 16G, 512M or a number of bytes.") from None


def parse(raw: Any, source: str, base: Path) -> Config:
    """Validate a parsed YAML document; relative paths are relative to the file's folder."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: the config must be a YAML mapping with keys {', '.join(TOP_KEYS)}.")
    for key in raw:
        if key not in TOP_KEYS:
            raise ConfigError(str(unknown_key_error(str(key), TOP_KEYS, source)))
    paths_raw = raw.get("paths")
    if not isinstance(paths_raw, Mapping):
        raise ConfigError(f"{source}: 'paths' is required (inbox, outbox, failed, archive, state).")
    for key in paths_raw:
        if key not in PATH_KEYS:
            raise ConfigError(str(unknown_key_error(str(key), PATH_KEYS, f"{source}: paths")))
    resolved: dict[str, Any] = {}
    for key in ("inbox", "outbox", "failed", "archive", "state"):
        value = paths_raw.get(key)
        if value is None:
            if key == "archive" and paths_raw.get("delete_originals"):
                resolved[key] = None
                continue
            raise ConfigError(f"{source}: paths.{key} is required.")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{source}: paths.{key} must be a folder path, got {value!r}.")
        resolved[key] = (base / os.path.expanduser(value)).resolve()
    delete = paths_raw.get("delete_originals", False)
    if not isinstance(delete, bool):
        raise ConfigError(f"{source}: paths.delete_originals must be true or false, got {delete!r}.")
    paths = Paths(**resolved, delete_originals=delete)
    check_paths(paths, source)

    weights = raw.get("weights", "imagenet")
    if not isinstance(weights, str):
        raise ConfigError(f"{source}: weights must be 'imagenet' or a file path, got {weights!r}.")
    if weights != "imagenet":
        weights = str((base / os.path.expanduser(weights)).resolve())
        if not os.path.isfile(weights) or not os.access(weights, os.R_OK):
            raise ConfigError(f"{source}: weights {weights} is not a readable file; fix the path or its "
                              "permissions (the service's user must be able to read it).")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ConfigError(f"{source}: defaults must be a mapping of job parameters.")
    try:
        resolve(defaults, where=f"{source}: defaults")
    except ParamError as exc:
        raise ConfigError(str(exc)) from None
    return Config(paths=paths, weights=weights, defaults=dict(defaults), source=source,
                  **{k: _section(cls, raw.get(k), f"{source}: {k}", k) for k, cls in SECTIONS.items()})


def check_paths(p: Paths, source: str) -> None:
    """Refuse layouts that loop or lose files: no folder inside another, inbox excluded."""
    named = {"inbox": p.inbox, "outbox": p.outbox, "failed": p.failed, "state": p.state}
    if p.archive is not None:
        named["archive"] = p.archive
    items = list(named.items())
    for i, (a, pa) in enumerate(items):
        for b, pb in items[i + 1:]:
            if pa == pb:
                raise ConfigError(f"{source}: paths.{a} and paths.{b} are the same folder ({pa}); give each its own.")
            for inner, outer, x, y in ((pa, pb, a, b), (pb, pa, b, a)):
                if outer in inner.parents:
                    raise ConfigError(
                        f"{source}: paths.{x} ({inner}) is inside paths.{y} ({outer}). "
                        + ("The daemon would take its own files as new jobs. " if y == "inbox" else "")
                        + "Put each folder side by side instead."
                    )


def load(path: str | os.PathLike) -> Config:
    path = Path(path).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc}).") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse(raw, str(path), path.parent.resolve())


def default_path() -> str:
    return os.environ.get("NSTD_CONFIG", "/etc/nstd/config.yaml")

