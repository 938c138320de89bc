"""Drop-in interface: give a converted model the interface of the source .tflite it was rebuilt from.

Apps address a model's tensors by position and by name (``get_input_details()[0]``, MediaPipe
calculators, the TFLite Task Library), and the Task Library and MediaPipe Tasks read the TFLite
Support metadata. ``TFLiteConverter`` on the rebuilt SavedModel keeps none of that: it names every
I/O tensor after the SavedModel (``serving_default_x:0``, ``StatefulPartitionedCall:1``), orders a
signature's outputs by name, always writes a SignatureDef, and drops the source's metadata. Here,
for each signature plan of the rebuild (:func:`.rebuild.plan_signatures`: the source's SignatureDefs,
or ``serving_default`` over subgraph 0 for a file without any):

* converter tensors are matched to source tensors through the converted SignatureDef, whose names
  are the rebuild's (``IOSpec.name``, one per source tensor); no shape guessing;
* the signature subgraph's ``inputs``/``outputs`` become the source subgraph's, in its order (an
  output the source signature does not expose is absent from the conversion and stays absent);
* those tensors take the source tensor names (another tensor of the subgraph already carrying such
  a name gets ``__<index>`` appended, so names stay unique) and, where the shapes agree, the
  source's ``shape_signature``. A different shape or type is not rewritten (it is what the
  converted graph computes); types differ only where ``--io``/``--target``/``--dtype`` asked for
  it, and each difference is listed (``io_type_changes``) for the caller to print;
* SignatureDefs: the source's keys, input/output names and order; none when the source had none;
  a source SignatureDef that names tensors other than its subgraph's inputs (planned over the
  subgraph's own I/O, see :func:`.rebuild.plan_signatures`) is written naming the real I/O tensors,
  under the plan's names (``signatures_repointed``);
* metadata: every source entry (name + bytes) is kept, in order, except the two that describe the
  file itself, which take the converted file's value: ``min_runtime_version`` (the oldest runtime
  that runs the new ops and versions, computed by the converter) and ``CONVERSION_METADATA`` (how
  this file was converted). Converter entries the source lacked are appended. ``TFLITE_METADATA`` is
  copied byte for byte: tensor metadata is per position, which is kept. (With integer I/O the
  Task Library feeds the integer input as is; the source's float normalization stays as recorded.);
* an associated-files zip that TFLite Support appended after the source flatbuffer (found by its
  end-of-central-directory record, starting at its first local header) is appended to the result
  unchanged; zip offsets are relative to the archive (or corrected by readers from the central
  directory's position), so the archive stays readable at its new place.

A SavedModel source (``source`` None) has no .tflite to restore from: the result keeps the
SavedModel's interface as the converter writes it (its signature keys and names, outputs ordered
by name, converter tensor names); nothing is rewritten.

Weights are not touched (the rewrite goes through :mod:`.fbedit`; buffers are views until packed).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import UnsupportedOpError
from ..model import ir

#: Metadata entries that describe the file itself: the converted file's value replaces the source's.
FILE_METADATA = ("min_runtime_version", "CONVERSION_METADATA")
_EOCD = b"PK\x05\x06"
_LOCAL_HEADER = b"PK\x03\x04"


def _s(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else ("" if v is None else str(v))


def appended_archive(model: ir.Model) -> bytes:
    """The zip archive appended after the flatbuffer of ``model`` (TFLite Support's associated
    files), or ``b""``. It starts at the first local header the central directory lists and must lie
    past every buffer of the flatbuffer."""
    storage = model._storage
    if storage is None or model.size < 22:
        return b""
    view = memoryview(storage)[:model.size]
    tail = bytes(view[max(0, model.size - 65557):])
    if _EOCD not in tail:
        return b""
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(view))) as zf:
            infos = zf.infolist()
            start = min((i.header_offset for i in infos), default=None)
    except (zipfile.BadZipFile, OSError, ValueError):
        return b""
    if start is None or bytes(view[start:start + 4]) != _LOCAL_HEADER:
        return b""
    if any(not b.external and b.offset + b.size > start for b in model.buffers if b.size):
        return b""  # the "archive" overlaps the flatbuffer's own data: not an appended one
    return bytes(view[start:])


def restore_interface(source: ir.Model | None, plans: Sequence[Any] | None, blob: bytes, reason: str = ""
                      ) -> tuple[bytes, dict[str, Any]]:
    """``blob`` (converted from the rebuild of ``source`` with ``plans``) with the source's
    interface, and what was done (see the module docstring). ``reason``: what asked for other I/O
    types (e.g. ``"--io int8"``), recorded with each type change."""
    if source is None or not plans:
        return blob, {"restored": False,
                      "why": "SavedModel source: the interface is the SavedModel's (its signature keys and names, "
                             "outputs in the converter's order)"}
    from tensorflow.lite.python import schema_py_generated as fb

    from ..model.schema import bundled_schema
    from .fbedit import pack, unpack

    model = unpack(blob)
    schema = bundled_schema()
    by_key = {_s(s.signatureKey): s for s in model.signatureDefs or []}
    report: dict[str, Any] = {"restored": True, "renamed": 0, "outputs_reordered": [], "inputs_reordered": [],
                              "io_type_changes": [], "shape_differences": [], "missing_outputs": [],
                              "signatures_repointed": []}
    new_sigs = []
    for plan in plans:
        rs = by_key.get(plan.key)
        if rs is None:
            raise UnsupportedOpError([f"the converted model has no signature {plan.key!r} (it has "
                                      f"{', '.join(sorted(by_key)) or 'none'}); cannot restore the source's interface"])
        rsg = model.subgraphs[rs.subgraphIndex]
        ssg = source.subgraphs[plan.subgraph_index]
        r_in = {_s(m.name): int(m.tensorIndex) for m in rs.inputs or []}
        r_out = {_s(m.name): int(m.tensorIndex) for m in rs.outputs or []}
        lacking = [s.name for s in plan.inputs if s.name not in r_in] + [s.name for s in plan.outputs
                                                                         if s.name not in r_out]
        if lacking:
            raise UnsupportedOpError([f"the converted signature {plan.key!r} lacks {', '.join(lacking)}; cannot "
                                      "restore the source's interface"])
        in_map = {s.tensor.index: r_in[s.name] for s in plan.inputs}
        out_map = {s.tensor.index: r_out[s.name] for s in plan.outputs}
        new_in = [in_map[ti] for ti in ssg.inputs]
        new_out = [out_map[ti] for ti in ssg.outputs if ti in out_map]
        report["missing_outputs"].extend(ssg.tensors[ti].name for ti in ssg.outputs if ti not in out_map)
        where = plan.key if source.signatures else "outputs"
        if list(rsg.inputs) != new_in:
            report["inputs_reordered"].append(where)
        if list(rsg.outputs) != new_out:
            report["outputs_reordered"].append(where)
        rsg.inputs = np.array(new_in, dtype=np.int32)
        rsg.outputs = np.array(new_out, dtype=np.int32)
        if ssg.name:
            rsg.name = ssg.name.encode()
        pairs = [("input", s, in_map[s]) for s in ssg.inputs] + [("output", s, out_map[s]) for s in ssg.outputs
                                                                  if s in out_map]
        wanted = {ssg.tensors[s].name for _, s, _ in pairs}
        mine = {r for _, _, r in pairs}
        for k, t in enumerate(rsg.tensors):  # keep names unique: another tensor with a source I/O name moves aside
            if k not in mine and _s(t.name) in wanted:
                t.name = f"{_s(t.name)}__{k}".encode()
        for kind, s, r in pairs:
            ts, tr = ssg.tensors[s], rsg.tensors[r]
            if _s(tr.name) != ts.name:
                tr.name = ts.name.encode()
                report["renamed"] += 1
            shape = tuple(int(d) for d in (tr.shape if tr.shape is not None else ()))
            sig = tuple(int(d) for d in tr.shapeSignature) if tr.shapeSignature is not None else shape
            if shape != tuple(ts.shape):
                report["shape_differences"].append({"tensor": ts.name, "kind": kind, "source": list(ts.shape),
                                                    "result": list(shape)})
            elif sig != tuple(ts.shape_signature):
                tr.shapeSignature = np.array(ts.shape_signature, dtype=np.int32)
            rtype = schema.enum_name("TensorType", int(tr.type))
            if rtype != ts.type_name:
                report["io_type_changes"].append({"tensor": ts.name, "kind": kind, "source": ts.type_name,
                                                  "result": rtype, "why": reason})
        if source.signatures:
            ssig = next(s for s in source.signatures if s.key == plan.key)

            def tmap(name: str, index: int) -> Any:
                m = fb.TensorMapT()
                m.name, m.tensorIndex = name.encode(), index
                return m

            if getattr(plan, "subgraph_io_note", ""):
                # the source SignatureDef names tensors that are not its subgraph's I/O (see
                # rebuild.plan_signatures): the result's names the real I/O, under the plan's names
                rs.inputs = [tmap(sp.name, in_map[sp.tensor.index]) for sp in plan.inputs]
                rs.outputs = [tmap(sp.name, out_map[sp.tensor.index]) for sp in plan.outputs
                              if sp.tensor.index in out_map]
                report["signatures_repointed"].append(plan.key)
            else:
                rs.inputs = [tmap(n, in_map[ti]) for n, ti in ssig.inputs]
                rs.outputs = [tmap(n, out_map[ti]) for n, ti in ssig.outputs if ti in out_map]
            new_sigs.append(rs)
    model.signatureDefs = new_sigs or None
    report["signatures"] = [s.key for s in source.signatures]
    report["metadata"] = _restore_metadata(model, source, fb)
    archive = appended_archive(source)
    report["appended_archive_bytes"] = len(archive)
    return pack(model, archive), report


def _restore_metadata(model: Any, source: ir.Model, fb: Any) -> dict[str, list[str]]:
    """The source's metadata entries on ``model`` (see the module docstring)."""
    converted = [(_s(m.name), m) for m in model.metadata or []]
    conv_by_name = dict(converted)
    out, done = [], {"kept": [], "updated": [], "added": []}
    source_names = {n for n, _ in source.metadata}
    for name, b in source.metadata:
        if name in FILE_METADATA and name in conv_by_name:
            out.append(conv_by_name[name])
            done["updated"].append(name)
            continue
        buf = source.buffers[b]
        storage = memoryview(source._storage)
        buf_t = fb.BufferT()
        buf_t.data = np.frombuffer(storage[buf.offset:buf.offset + buf.size], dtype=np.uint8)
        model.buffers.append(buf_t)
        m = fb.MetadataT()
        m.name, m.buffer = name.encode(), len(model.buffers) - 1
        out.append(m)
        done["kept"].append(name)
    for name, m in converted:
        if name not in source_names:
            out.append(m)
            done["added"].append(name)
    model.metadata = out or None
    return done
