"""Jobs in the inbox: what counts as one, when it is complete, and who owns it.

Three forms (all may sit in sub-folders, which are mirrored to the outbox):
  (a) ``NAME.yaml`` naming its images, which lie beside it;
  (b) a folder ``NAME/`` with ``content.*``, ``style*.*`` and an optional ``job.yaml``;
  (c) ``NAME.content.EXT`` + ``NAME.style*.EXT`` (defaults apply).

A job is *claimed* by renaming its first file (the YAML, the folder, or the content
image) into a fresh work folder under ``state/work/``. rename() is atomic on one file
system, NFS and SMB included, so of several daemons sharing the inbox exactly one
wins. The work folder holds a lease (host, pid, heartbeat) so a job whose daemon died
is taken over by another.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from nstd.atomic import write_bytes_atomic
from nstd.errors import NstdError, ParamError
from nstd.images import FORMATS, LoadedImage
from nstd.untrusted import SCAN_BYTES, SCAN_DEPTH, SCAN_ENTRIES, YAML_BYTES, UnsafeInput, is_regular, kind, load_yaml, read_regular, short

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
YAML_EXTS = {".yaml", ".yml"}
#: A clip's content (nstd/video): a job whose content has one of these runs frame by frame, as
#: does an animated GIF or WebP; its output may also be one of VIDEO_OUTPUT_EXTS.
VIDEO_EXTS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".ogv",
              ".3gp", ".flv", ".wmv"}
VIDEO_OUTPUT_EXTS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".gif", ".webp", ".png", ".jpg", ".jpeg", ".tif",
                     ".tiff", ".bmp"}
#: Partial downloads and sync/NAS/OS litter: never a job (or part of one).
LITTER_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".download", ".!sync", ".!qB", ".swp")
LITTER_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "@eadir", "#recycle", "$recycle.bin", ".stfolder",
                ".stversions", "lost+found", ".snapshot", ".trash", ".trashes", ".spotlight-v100", ".fseventsd",
                ".apdisk", "icon\r"}


class JobError(NstdError):
    phase = "job"


def is_litter(name: str) -> bool:
    low = name.lower()
    return (name.startswith((".", "~$", "._", "~")) or low in LITTER_NAMES
            or low.endswith(LITTER_SUFFIXES) or low.startswith(".syncthing."))


@dataclass
class Candidate:
    """A job seen in the inbox, complete or not."""

    name: str
    rel: Path  # its folder relative to the inbox ("." at the top)
    form: str  # yaml | folder | pair
    primary: Path  # renamed first to claim it
    files: list[Path]  # everything that belongs to it (absolute, in the inbox)
    waiting_for: str | None = None  # why it is not complete yet
    broken: str | None = None  # why it can never run (e.g. a part that is a folder): taken and failed at once
    shared: frozenset[Path] = frozenset()  # parts another job in the inbox names too: copied, not moved

    @property
    def key(self) -> str:
        return f"{self.rel}/{self.name}:{self.form}"


def images_in(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    return [p for p in entries if is_regular(p) and not is_litter(p.name)]


#: The longest file name most file systems allow, in bytes.
NAME_BYTES = 255


def name_problem(ref: Any) -> str | None:
    """Why ``ref`` cannot name a part of a job, or None.

    A part is a plain file name beside its job. This is decided from the value alone,
    before any file-system call, so no value from the inbox can make one raise.
    """
    if not isinstance(ref, str) or ref in ("", ".", ".."):
        return f"must be a file name, got {short(ref)}"
    if "\0" in ref:
        return "contains a NUL byte, which no file name can hold"
    try:
        length = len(os.fsencode(ref))
    except UnicodeError:
        return "holds characters no file name can have (unpaired surrogates)"
    if length > NAME_BYTES:
        return f"is {length:,} bytes long, and a file name holds at most {NAME_BYTES}"
    if os.path.isabs(ref) or ".." in re.split(r"[/\\]", ref):
        return "leaves the job's folder; name a file beside the job (no absolute paths, no '..')"
    if "/" in ref or "\\" in ref:
        return "names a file in a sub-folder; name a file beside the job (a plain file name, no '/')"
    return None


def _yaml_refs(path: Path, max_bytes: int) -> list[tuple[str, str]] | None:
    """(key, file name) for each usable name a job YAML gives (None when it cannot be read
    as YAML yet). Values that cannot be names are left out: the job is taken and fails saying why.
    """
    try:
        data = load_yaml(read_regular(path, max_bytes, "job YAML", "limits.yaml_bytes").decode())
    except UnsafeInput:
        return []  # complete but refused: the worker fails it with the reason
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(data, dict):
        return []
    refs = [("content", data.get("content"))]
    if data.get("init") not in ("noise", "content", "style"):
        refs.append(("init", data.get("init")))
    regions = [r for r in data.get("regions") if isinstance(r, dict)] if isinstance(data.get("regions"), list) else []
    for value in [data.get("style")] + [r.get("style") for r in regions]:
        for item in value if isinstance(value, list) else [value]:
            refs.append(("style", item.get("path") if isinstance(item, dict) else item))
    refs += [("mask", r.get("mask")) for r in regions]
    return [(k, r) for k, r in refs if r is not None and name_problem(r) is None]


@dataclass(frozen=True)
class Refused:
    """An inbox entry that is no part of any job, and why (shown by ``nstd status``)."""

    path: str  # relative to the inbox
    reason: str


LINK_REASON = "a symbolic link: nstd never follows links; copy the file itself in"
ORPHAN_REASON = ("part of no job: name it in a job YAML, or call it NAME.content.EXT / NAME.style.EXT, or put it "
                 "in a job folder")


class ScanBudget:
    """What one scan may still look at: junk in one folder never slows the others much.

    ``memo``: each job YAML's names from the last scan, by its size, mtime and inode, so a
    YAML is read again only when it changed; :attr:`fresh` is this scan's, for the next.
    """

    def __init__(self, entries: int = SCAN_ENTRIES, depth: int = SCAN_DEPTH, yaml_bytes: int = SCAN_BYTES,
                 memo: dict[Path, tuple] | None = None) -> None:
        self.limit, self.left, self.depth = entries, entries, depth
        self.bytes_limit, self.bytes_left = yaml_bytes, yaml_bytes
        self.memo, self.fresh = memo or {}, {}

    def yaml_refs(self, path: Path, max_bytes: int) -> list[tuple[str, str]] | None | str:
        """:func:`_yaml_refs`, or the reason it is not read in this scan."""
        st = os.lstat(path)
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        if self.memo.get(path, (None,))[0] == key:
            self.fresh[path] = self.memo[path]
            return self.memo[path][1]
        cost = min(st.st_size, max_bytes + 1)
        if cost > self.bytes_left:
            return (f"not read yet: this scan already read {self.bytes_limit:,} bytes of job YAML "
                    "(limits.scan_bytes); a later scan reads it")
        self.bytes_left -= cost
        refs = _yaml_refs(path, max_bytes)
        self.fresh[path] = (key, refs)
        return refs

    def listing(self, folder: Path, refused: list[Refused], rel: Path) -> dict[Path, str]:
        """``folder``'s entries and their :func:`~nstd.untrusted.kind`, sorted by name, at most
        what the budget has left (the rest is reported). Kinds come from the directory
        itself where the file system says them: no ``lstat`` per entry."""
        out: list[tuple[str, str]] = []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    if self.left <= 0:
                        refused.append(Refused(f"{rel}/", f"not all of it was looked at: one scan looks at "
                                                          f"{self.limit:,} entries at most (limits.scan_entries)"))
                        break
                    self.left -= 1
                    if not is_litter(entry.name):
                        out.append((entry.name, _entry_kind(entry)))
        except OSError:
            pass
        return {folder / name: k for name, k in sorted(out)}


def _entry_kind(entry: os.DirEntry) -> str:
    try:
        if entry.is_symlink():
            return "link"
        if entry.is_file(follow_symlinks=False):
            return "file"
        return "dir" if entry.is_dir(follow_symlinks=False) else "other"
    except OSError:
        return "missing"


def discover(inbox: Path, max_yaml_bytes: int = YAML_BYTES, refused: list[Refused] | None = None,
             budget: ScanBudget | None = None) -> list[Candidate]:
    """Every job in ``inbox`` (recursively), complete or still arriving.

    Symbolic links are never part of a job; those no job names go to ``refused``. Each
    entry is looked at on its own: one that raises anything is listed in ``refused`` with
    the reason, and the scan goes on.
    """
    found: list[Candidate] = []
    refused = [] if refused is None else refused
    budget = budget or ScanBudget()

    def alone(path: Path, what: Callable[[], None]) -> None:
        try:
            what()
        except Exception as exc:  # noqa: BLE001 - one odd entry never stops the scan
            refused.append(Refused(str(path.relative_to(inbox)), f"cannot be read as a job ({type(exc).__name__}: "
                                                                  f"{short(str(exc))}); it is left where it is"))

    def walk(folder: Path, depth: int, kinds: dict[Path, str]) -> None:
        rel = folder.relative_to(inbox)
        entries = list(kinds)
        files = [p for p in entries if kinds[p] == "file"]
        for d in (p for p in entries if kinds[p] == "dir"):
            alone(d, lambda d=d: look_into(d, rel, depth + 1))
        owned: set[Path] = set()
        yaml_jobs: list[Candidate] = []
        for y in (p for p in files if p.suffix.lower() in YAML_EXTS):
            alone(y, lambda y=y: yaml_jobs.append(yaml_candidate(y, rel, budget.yaml_refs(y, max_yaml_bytes))))
        for c in yaml_jobs:
            owned.update(c.files)
        named = Counter(p for c in yaml_jobs for p in set(c.files[1:]))
        for c in yaml_jobs:  # a style two jobs name goes with each of them; the last one takes it
            c.shared = frozenset(p for p in c.files[1:] if named[p] > 1)
            found.append(c)
        styles = styles_by_name([p for p in files if p not in owned])
        for c in (p for p in files if p not in owned and ".content." in p.name.lower()):
            alone(c, lambda c=c: found.append(pair_candidate(c, rel, styles)))
        taken = owned | {p for c in found if c.rel == rel for p in c.files}
        for p in entries:
            if p not in taken and kinds[p] in ("link", "file"):
                refused.append(Refused(str(rel / p.name), LINK_REASON if kinds[p] == "link" else ORPHAN_REASON))

    def look_into(d: Path, rel: Path, depth: int) -> None:
        """A job folder, or a folder to look into (within the depth budget)."""
        if depth > budget.depth:
            refused.append(Refused(f"{rel / d.name}/", f"more than {budget.depth} folders deep (limits.scan_depth): "
                                                       "not looked at; move the job higher up"))
            return
        kinds = budget.listing(d, refused, rel / d.name)
        names = {p.name.lower() for p, k in kinds.items() if k == "file"}  # a folder of links alone is no job
        if "job.yaml" in names or any(n.startswith("content.") for n in names):
            found.append(folder_candidate(d, rel, kinds))
        else:
            walk(d, depth, kinds)

    if kind(inbox) == "dir":
        walk(inbox, 0, budget.listing(inbox, refused, Path(".")))
    return found


def yaml_candidate(y: Path, rel: Path, refs: list[tuple[str, str]] | None | str) -> Candidate:
    """``NAME.yaml`` and the regular files (or links) beside it that it names (``refs``, or
    why they are not known yet).

    A name that is missing is waited for; one that is a folder or anything else is no
    part of the job, which is taken and fails saying what the name is.
    """
    if isinstance(refs, str):
        return Candidate(y.stem, rel, "yaml", y, [y], refs)
    refs = refs or []
    kinds = {r: kind(y.parent / r) for _, r in refs}
    missing = sorted({r for r, k in kinds.items() if k == "missing"})
    files = [y] + [y.parent / r for r, k in kinds.items() if k in ("file", "link")]
    odd = [(key, r) for key, r in refs if kinds[r] in ("dir", "other")]
    broken = None
    if odd:
        key, r = odd[0]
        what = "a folder" if kinds[r] == "dir" else "not a regular file"
        broken = f"'{key}: {r}' is {what}, not an image; name an image file beside the job."
    return Candidate(y.stem, rel, "yaml", y, list(dict.fromkeys(files)),
                     f"waiting for {', '.join(missing)}" if missing and not broken else None, broken=broken)


def styles_by_name(free: list[Path]) -> dict[str, list[Path]]:
    """Images named ``NAME.style*.EXT``, by lower-case ``NAME`` (every ``.style`` in a name counts)."""
    out: dict[str, list[Path]] = {}
    for p in free:
        low = p.name.lower()
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        at = low.find(".style")
        while at >= 0:
            out.setdefault(low[:at], []).append(p)
            at = low.find(".style", at + 1)
    return out


def pair_candidate(c: Path, rel: Path, styles: dict[str, list[Path]]) -> Candidate:
    """``NAME.content.EXT`` and the ``NAME.style*.EXT`` images beside it."""
    name = c.name[: c.name.lower().rindex(".content.")]
    mine = styles.get(name.lower(), [])
    return Candidate(name, rel, "pair", c, [c] + mine,
                     None if mine else f"waiting for {name}.style.* beside {c.name}")


def folder_candidate(d: Path, rel: Path, kinds: dict[Path, str]) -> Candidate:
    """A job folder, from its listing: its regular files are its parts (a link counts as
    present: it moves with the folder and the job fails saying so)."""
    files = [p for p, k in kinds.items() if k == "file"]
    names = [p.name.lower() for p, k in kinds.items() if k in ("file", "link")]
    waiting = None
    if "job.yaml" not in names:
        if not any(n.startswith("content.") for n in names):
            waiting = "waiting for content.* in the folder"
        elif not any(n.startswith("style") for n in names):
            waiting = "waiting for style*.* in the folder"
    return Candidate(d.name, rel, "folder", d, files, waiting)


def signature(c: Candidate) -> tuple:
    """Sizes and mtimes of every part: a job is settled when this stops changing."""
    sig = []
    for p in c.files:
        try:
            st = os.lstat(p)  # a link's own metadata: never its target's
        except OSError:
            sig.append((str(p), -1, -1))
            continue
        sig.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(sorted(sig))


@dataclass
class Seen:
    sig: tuple
    changed: float  # monotonic time of the last change
    arrived_wall: float  # wall time first seen: arrival order and queue wait


class Settler:
    """Remembers what each candidate looked like, to tell finished copies from running ones."""

    def __init__(self) -> None:
        self.seen: dict[str, Seen] = {}

    def update(self, candidates: list[Candidate], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        keys = set()
        for c in candidates:
            keys.add(c.key)
            sig = signature(c)
            s = self.seen.get(c.key)
            if s is None:
                self.seen[c.key] = Seen(sig, now, time.time())
            elif s.sig != sig:
                s.sig, s.changed = sig, now
        for k in list(self.seen):
            if k not in keys:
                del self.seen[k]

    def settled(self, c: Candidate, seconds: float, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        s = self.seen.get(c.key)
        return s is not None and now - s.changed >= seconds

    def idle(self, c: Candidate, now: float | None = None) -> float:
        """Seconds since any part last changed: a copy still writing is still arriving."""
        now = time.monotonic() if now is None else now
        s = self.seen.get(c.key)
        return 0.0 if s is None else now - s.changed


# --- job specification (what the job asks for) --------------------------------------------


@dataclass
class JobSpec:
    name: str
    content: Path
    styles: list[tuple[Path, float]]
    raw_params: dict[str, Any]
    output_name: str | None
    files: list[Path] = field(default_factory=list)
    regions: list[tuple[Path, list[tuple[Path, float]]]] = field(default_factory=list)  # (mask, its styles)


def inside(folder: Path, rel: Any, what: str, source: str) -> Path:
    """The regular file ``rel`` names beside the job in ``folder``; anything else fails the job
    saying what it is (never a link followed, never a folder taken as an image)."""
    problem = name_problem(rel)
    label = rel if isinstance(rel, str) and len(rel) <= 80 and rel.isprintable() else short(rel)
    if problem is not None and problem.startswith("must be"):
        raise JobError(f"{source}: '{what}' {problem}.")
    if problem is not None:
        raise JobError(f"{source}: '{what}: {label}' {problem}.")
    path = folder / rel
    found = kind(path)
    if found == "link":
        raise JobError(f"{source}: '{what}: {label}' is a symbolic link; nstd never follows links. Copy the "
                       "file itself in instead.")
    if found == "dir":
        raise JobError(f"{source}: '{what}: {label}' is a folder, not an image; name an image file beside the job.")
    if found == "other":
        raise JobError(f"{source}: '{what}: {label}' is not a regular file (a device, pipe or socket); name an "
                       "image file beside the job.")
    if found == "missing":
        raise JobError(f"{source}: '{what}: {label}' does not exist in the job's folder.")
    return path


def read_job_yaml(path: Path, max_bytes: int) -> dict[str, Any]:
    try:
        data = load_yaml(read_regular(path, max_bytes, "job YAML", "limits.yaml_bytes").decode())
    except UnsafeInput as exc:
        raise JobError(str(exc)) from None
    except UnicodeDecodeError:
        raise JobError(f"{path.name}: not valid YAML: the file is not UTF-8 text.") from None
    except yaml.YAMLError as exc:
        raise JobError(f"{path.name}: not valid YAML: {str(exc)[:400]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise JobError(f"{path.name}: a job YAML must be a mapping of keys (content, style, size, ...), "
                       f"got {type(data).__name__}.")
    return data


def parse_styles(value: Any, folder: Path, source: str) -> list[tuple[Path, float]]:
    items = value if isinstance(value, list) else [value]
    if not items or value is None:
        raise JobError(f"{source}: 'style' must name at least one image (a path, or a list of paths or "
                       "{path, weight}).")
    out = []
    for item in items:
        if isinstance(item, dict):
            unknown = set(item) - {"path", "weight"}
            if unknown or "path" not in item:
                raise JobError(f"{source}: each style entry is {{path, weight}}; "
                               f"got keys {short(sorted(map(str, item)))}.")
            weight = item.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
                raise JobError(f"{source}: style weight must be a positive number, got {short(weight)}.")
            out.append((inside(folder, item["path"], "style", source), float(weight)))
        else:
            out.append((inside(folder, item, "style", source), 1.0))
    return out


def load_spec(name: str, form: str, input_dir: Path, max_yaml_bytes: int) -> JobSpec:
    """Read a claimed job's inputs (in its work folder) into a :class:`JobSpec`."""
    folder = input_dir / name if form == "folder" else input_dir
    links = sorted(p.name for p in folder.iterdir() if kind(p) == "link" and not is_litter(p.name))
    if form == "folder" and links:
        raise JobError(f"{name}/: {short(links)} {'is a symbolic link' if len(links) == 1 else 'are symbolic links'}"
                       "; nstd never follows links. Copy the files themselves into the folder.")
    files = sorted(p for p in folder.iterdir() if is_regular(p))
    yaml_path = folder / "job.yaml" if form == "folder" else None
    if form == "yaml":  # NAME.yaml, or NAME.yml
        yaml_path = next((p for p in files if p.stem == name and p.suffix.lower() in YAML_EXTS), None)
    data: dict[str, Any] = {}
    source = name
    if yaml_path is not None and kind(yaml_path) == "link":
        raise JobError(f"{yaml_path.name}: is a symbolic link; nstd never follows links. Copy the YAML itself in.")
    if yaml_path is not None and is_regular(yaml_path):
        data = read_job_yaml(yaml_path, max_yaml_bytes)
        source = yaml_path.name if form != "folder" else f"{name}/job.yaml"
    data = dict(data)
    content_ref, style_ref = data.pop("content", None), data.pop("style", None)
    output = data.pop("output", None)
    regions = parse_regions(data.pop("regions", None), folder, source)
    if form == "pair":
        content = next(p for p in files if ".content." in p.name.lower())
        styles = [(p, 1.0) for p in files if ".style" in p.name.lower()]
    elif form == "folder" and content_ref is None:
        found = [p for p in images_in(folder) if p.name.lower().startswith("content.")]
        if len(found) != 1:
            raise JobError(f"{name}/: needs exactly one content.* image, found {[p.name for p in found]}.")
        content = found[0]
        styles = [(p, 1.0) for p in images_in(folder) if p.name.lower().startswith("style")]
        if style_ref is not None:
            styles = parse_styles(style_ref, folder, source)
        if not regions:
            regions = folder_regions(folder, styles)
        if not styles and not regions:
            raise JobError(f"{name}/: no style*.* image in the folder.")
    else:
        if content_ref is None:
            raise JobError(f"{source}: 'content' is required: the content image's file name beside the YAML.")
        content = inside(folder, content_ref, "content", source)
        styles = parse_styles(style_ref, folder, source) if style_ref is not None or not regions else []
    if output is not None:
        if name_problem(output) is not None or output.startswith("."):
            raise JobError(f"{source}: 'output' must be a plain file name like result.png, got {short(output)}.")
        if Path(output).suffix.lower() not in set(FORMATS) | VIDEO_OUTPUT_EXTS:
            raise JobError(f"{source}: 'output: {output}' has an unsupported extension; use one of "
                           f"{', '.join(sorted(FORMATS))} (a picture; for a clip also "
                           f"{', '.join(sorted(VIDEO_OUTPUT_EXTS - set(FORMATS)))}).")
        if Path(output).suffix.lower() not in FORMATS and \
                content.suffix.lower() not in VIDEO_EXTS | {".gif", ".webp"}:
            raise JobError(f"{source}: 'output: {output}' is for a clip, but the content {content.name} is a "
                           "picture; name a picture output (.png, .jpg, .webp, .tif).")
    return JobSpec(name, content, styles, data, output, files, regions)


def parse_regions(value: Any, folder: Path, source: str) -> list[tuple[Path, list[tuple[Path, float]]]]:
    """``regions: [{mask: sky.png, style: starry.jpg}, {mask: ground.png}]`` (no style: keep the content)."""
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise JobError(f"{source}: 'regions' must be a list of {{mask, style}} entries, got {short(value)}.")
    out = []
    for item in value:
        if not isinstance(item, dict) or "mask" not in item or set(item) - {"mask", "style"}:
            raise JobError(f"{source}: each region is {{mask: FILE, style: FILE or list}} (style optional: no "
                           f"style keeps the content there); got {short(item)}.")
        styles = parse_styles(item["style"], folder, source) if item.get("style") is not None else []
        out.append((inside(folder, item["mask"], "mask", source), styles))
    return out


def folder_regions(folder: Path, styles: list[tuple[Path, float]]) -> list[tuple[Path, list[tuple[Path, float]]]]:
    """A folder job's ``maskX.*`` files, each with the ``styleX.*`` of the same suffix (none: no style)."""
    by_suffix = {p.stem.lower()[len("style"):]: (p, w) for p, w in styles}
    masks = [p for p in images_in(folder) if p.name.lower().startswith("mask")]
    return [(m, [by_suffix[m.stem.lower()[len("mask"):]]] if m.stem.lower()[len("mask"):] in by_suffix else [])
            for m in masks]


def load_inbox_image(path: Path, limits: Any) -> LoadedImage:
    """An inbox image: a regular file (never a link), size checked before reading, pixels
    checked from the header before decoding."""
    from nstd.images import decode_image

    try:
        data = read_regular(path, limits.input_bytes, "image", "limits.input_bytes")
    except UnsafeInput as exc:
        raise JobError(str(exc)) from None
    return decode_image(data, path, limits.input_pixels)


def check_limits(params: Any, content_size: tuple[int, int], limits: Any, source: str, image: str = "content") -> None:
    """Refuse a job over the daemon's limits, or whose picture VGG-19 cannot take, before any work."""
    from nstd.engine.plan import check_size

    size = params.size or max(content_size)
    if size > limits.size:
        raise ParamError(f"{source}: size {size} is over the limit of {limits.size} pixels (limits.size); ask for "
                         "a smaller size.")
    if params.iterations > limits.iterations:
        raise ParamError(f"{source}: iterations {params.iterations} is over the limit of {limits.iterations} "
                         "(limits.iterations).")
    check_size(*content_size, params.size, limits.size, f"{source}: {image}")


# --- claims and leases --------------------------------------------------------------------


def host_name() -> str:
    return socket.gethostname()


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "job"


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    write_bytes_atomic(path, yaml.safe_dump(data, sort_keys=False).encode())


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def daemon_liveness(status: dict[str, Any], timeout: float) -> tuple[bool, str]:
    """Is the daemon behind a status file alive? Its own host can check the pid; any host
    can check how old its last heartbeat is."""
    try:
        age = time.time() - float(status.get("updated", 0))
    except (TypeError, ValueError):
        return False, "unreadable status"
    pid = status.get("pid")
    if status.get("host") == host_name() and isinstance(pid, int) and not pid_alive(pid):
        return False, f"process {pid} is gone"
    if status.get("state") == "stopped":
        return False, "stopped"
    if age > timeout:
        return False, f"silent for {age:.0f}s"
    return True, f"updated {age:.0f}s ago"
