"""The Gradio page: the viewer (an iframe of the session's viser server) beside the controls, progress
bars per stage, the six camera views; every action goes to the session's EditorSession.

Work runs in the session's worker thread; a Timer polls the session twice a second and sends only the
panels whose content changed (so a text the user is typing is never overwritten by a refresh).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import gradio as gr

from xscene_core import semantics
from xscene_core.ops.preview_look import PAINTS
from xscene_core.types.world import DIRECTIONS, ChunkIndex

from .editor import EditorSession, box_fields
from .pictures import chunk_pictures
from .server import Editor
from .uploads import read_layout_file, read_nuscenes_sample

EXAMPLES = [
    "a rainy night on a downtown crossroad with parked cars",
    "a sunny suburban street with two cyclists and a bus",
    "a foggy morning on a rural road with a truck ahead",
    "an industrial area at dusk with a construction vehicle and cones",
]
OBJECT_CLASSES = [semantics.NAMES[i] for i in semantics.OBJECT_IDS]
PAINT_CHOICES = [("unstated", "")] + [(name, name) for name in PAINTS]
CSS = """
#viewer iframe {width: 100%; height: 640px; border: 0; border-radius: 8px;}
.stage-bars {font-family: monospace; font-size: 13px;}
.stage-bars .bar {background: #e5e7eb; border-radius: 4px; height: 10px; width: 100%; margin: 2px 0 6px 0;}
.stage-bars .fill {height: 10px; border-radius: 4px; background: #3b82f6;}
.stage-bars .done .fill {background: #16a34a;} .stage-bars .cancelled .fill, .stage-bars .failed .fill {background: #dc2626;}
.stage-bars .skipped .fill {background: #9ca3af;}
"""


def progress_html(es: EditorSession) -> str:
    """One bar per stage of the session's current or last job."""
    job = es.worker.job
    if job is None:
        return "<div class='stage-bars' id='job-state' data-state='idle'>No work yet.</div>"
    # data-started tells one job from the next (the browser tests wait for the job they started)
    rows = [f"<div class='stage-bars' id='job-state' data-state='{job.state}' data-started='{job.started:.6f}'>"
            f"<b>{html.escape(job.label)}</b> "
            f"- {job.state}"]
    for s in job.stages.values():
        frac = 1.0 if s.state in ("done", "skipped") else (s.step / s.total if s.total else 0.0)
        info = f"{s.step}/{s.total}" if s.total else ""
        rows.append(f"<div class='{s.state}'>{s.name}: {s.state} {info} {f'{s.seconds:.1f}s' if s.seconds else ''}"
                    f"<div class='bar'><div class='fill' style='width:{100 * frac:.0f}%'></div></div></div>")
    return "".join(rows) + "</div>"


def build(editor: Editor) -> gr.Blocks:
    """The page of the editor (one Blocks app for every session)."""

    def es_of(request: gr.Request) -> EditorSession:
        return editor.session(request.session_hash)

    def act(fn):
        """Run a page action; its errors become the page message (nothing else changes)."""
        def handler(request: gr.Request, *args):
            es = es_of(request)
            try:
                fn(es, *args)
            except (ValueError, RuntimeError, KeyError, IndexError) as err:
                es.say(f"⚠ {err}")
            return None
        return handler

    with gr.Blocks(title="xscene editor") as demo:
        gr.Markdown("## xscene: generate, edit and grow 3D driving scenes")
        with gr.Row():
            with gr.Column(scale=3):
                viewer = gr.HTML("<div>starting the viewer...</div>", elem_id="viewer")
                progress = gr.HTML(elem_id="progress")
                # beside the bars, not in a tab: Regenerate, Extend and Export start jobs from other tabs
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel", size="sm")
                message = gr.Markdown(elem_id="message")
            with gr.Column(scale=2):
                with gr.Tabs():
                    with gr.Tab("Prompt", id="tab-prompt"):
                        prompt = gr.Textbox(label="Prompt", lines=2, elem_id="prompt",
                                            placeholder="a rainy night on a downtown crossroad with parked cars")
                        gr.Examples(EXAMPLES, inputs=[prompt])
                        with gr.Row():
                            seed = gr.Number(0, label="Seed", precision=0, minimum=0, elem_id="seed")
                            modes = ["preview", "none"] + (["diffusion"] if editor.pool.diffusion_available else [])
                            images = gr.Radio(modes, value="preview", label="Images", elem_id="images")
                        generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                    with gr.Tab("Description & graph", id="tab-text"):
                        description = gr.Code(language="json", label="Description (editable JSON)", lines=12,
                                              elem_id="description")
                        graph = gr.Textbox(label="Scene graph (editable text)", lines=14, elem_id="graph")
                        from_text_btn = gr.Button("Generate from this text", elem_id="from-text")
                    with gr.Tab("Layout", id="tab-layout"):
                        layout_file = gr.File(label="Layout JSON (xscene.layout/1)", file_types=[".json"],
                                              elem_id="layout-file")
                        from_layout_btn = gr.Button("Generate from the layout", elem_id="from-layout")
                        with gr.Accordion("nuScenes sample (through the nuScenes loader)", open=False):
                            nus_root = gr.Textbox(label="dataroot (folder with v1.0-mini/)")
                            nus_version = gr.Textbox("v1.0-mini", label="version")
                            nus_sample = gr.Textbox(label="sample token or index (blank: first)")
                            from_nus_btn = gr.Button("Generate from the sample")
                    with gr.Tab("Edit", id="tab-edit"):
                        chunk_dd = gr.Dropdown(label="Chunk", choices=[], elem_id="chunk")
                        box_dd = gr.Dropdown(label="Box (or click one in the viewer)", choices=[], elem_id="box")
                        with gr.Row():
                            bx = gr.Number(label="x (m)", elem_id="box-x")
                            by = gr.Number(label="y (m)", elem_id="box-y")
                            byaw = gr.Number(label="yaw (deg)", elem_id="box-yaw")
                        with gr.Row():
                            bl = gr.Number(label="length", elem_id="box-l")
                            bw = gr.Number(label="width", elem_id="box-w")
                            bh = gr.Number(label="height", elem_id="box-h")
                        with gr.Row():
                            bclass = gr.Dropdown(OBJECT_CLASSES, label="Class", value="car", elem_id="box-class")
                            # the preview paints a vehicle in its box's colour, the image model reads it ("" = unstated)
                            bpaint = gr.Dropdown(PAINT_CHOICES, label="Paint", value="", elem_id="box-paint")
                        with gr.Row():
                            apply_box_btn = gr.Button("Apply to box", elem_id="apply-box")
                            add_box_btn = gr.Button("Add box here", elem_id="add-box")
                            delete_box_btn = gr.Button("Delete box", elem_id="delete-box")
                        lane_dd = gr.Dropdown(label="Lane", choices=[], elem_id="lane")
                        with gr.Row():
                            ldx = gr.Number(0.0, label="shift x (m)")
                            ldy = gr.Number(0.0, label="shift y (m)")
                        with gr.Row():
                            move_lane_btn = gr.Button("Shift lane")
                            delete_lane_btn = gr.Button("Delete lane")
                        intent = gr.Textbox(label="Edit in words", placeholder="remove the nearest parked car",
                                            elem_id="intent")
                        intent_btn = gr.Button("Apply the edit", elem_id="apply-intent")
                        with gr.Row():
                            regen_btn = gr.Button("Regenerate", variant="primary", elem_id="regenerate")
                            discard_btn = gr.Button("Discard edits", elem_id="discard")
                    with gr.Tab("World", id="tab-world"):
                        gr.Markdown("Extend from the chunk selected in *Edit* (or click an orange arrow in the viewer).")
                        with gr.Row():
                            ext_buttons = {d: gr.Button(d, size="sm", elem_id=f"extend-{d}")
                                           for d in ("north", "west", "east", "south")}
                        diag = gr.Dropdown(list(DIRECTIONS), value="northeast", label="any direction")
                        ext_btn = gr.Button("Extend that way")
                        with gr.Row():
                            roam_btn = gr.Button("Roam", elem_id="roam")
                            edit_mode_btn = gr.Button("Edit mode", elem_id="edit-mode")
                        with gr.Row():
                            undo_btn = gr.Button("Undo", elem_id="undo")
                            redo_btn = gr.Button("Redo", elem_id="redo")
                        history = gr.Markdown(elem_id="history")
                        with gr.Row():
                            save_name = gr.Textbox(label="Save as", placeholder="my_world", elem_id="save-name")
                            save_btn = gr.Button("Save", elem_id="save")
                        with gr.Row():
                            load_dd = gr.Dropdown(label="Saved worlds", choices=[], elem_id="load-name")
                            load_btn = gr.Button("Load", elem_id="load")
                        with gr.Row():
                            restore_dd = gr.Dropdown(label="Autosaves", choices=[], elem_id="restore-name")
                            restore_btn = gr.Button("Restore")
                        export_btn = gr.Button("Export (Occ3D npz, images + calibration, PLY, scene JSON)",
                                               elem_id="export")
                        export_file = gr.File(label="Export", interactive=False, elem_id="export-file")
        gallery = gr.Gallery(label="Six cameras of the selected chunk", columns=2, height="auto", object_fit="contain",
                             elem_id="gallery")
        timer = gr.Timer(0.5)

        # -- actions -------------------------------------------------------------------------------------
        generate_btn.click(act(lambda es, p, s, m: es.generate(p, s, m)), [prompt, seed, images], None)
        cancel_btn.click(act(lambda es: es.say("Cancelling...") if es.worker.cancel() else es.say("Nothing is running.")),
                         None, None)
        from_text_btn.click(act(lambda es, d, g, s, m: es.generate_from_text(d, g, s, m)),
                            [description, graph, seed, images], None)

        def from_file(es: EditorSession, f, s, m):
            if f is None:
                raise ValueError("choose a layout file first")
            layout, desc = read_layout_file(f)
            es.generate_from_layout(layout, desc, s, m, Path(f).name)
        from_layout_btn.click(act(from_file), [layout_file, seed, images], None)

        def from_nus(es: EditorSession, root, version, sample, s, m):
            layout, token = read_nuscenes_sample(root, version, sample)
            es.generate_from_layout(layout, None, s, m, f"nuScenes sample {token[:8]}")
        from_nus_btn.click(act(from_nus), [nus_root, nus_version, nus_sample, seed, images], None)

        def index_of(value) -> ChunkIndex:
            if not value:
                raise ValueError("pick a chunk first")
            _, i, j = str(value).split("_")
            return ChunkIndex(int(i), int(j))

        def box_of(value) -> int:
            if value is None or value == "":
                raise ValueError("pick a box first (click one in the viewer or choose it in the list)")
            return int(str(value).split(":")[0])

        # a list closed without a pick sends an empty value: that selects nothing new, it is no mistake
        chunk_dd.input(act(lambda es, c: es.select(index_of(c)) if c else None), [chunk_dd], None)
        box_dd.input(act(lambda es, c, b: es.select(index_of(c), box_of(b)) if c and b else None),
                     [chunk_dd, box_dd], None)
        lane_dd.input(act(lambda es, c, l: es.select(index_of(c), None, int(str(l).split(":")[0])) if c and l else None),
                      [chunk_dd, lane_dd], None)
        apply_box_btn.click(act(lambda es, c, b, x, y, yaw, l, w, h, k, paint: es.set_box(
            index_of(c), box_of(b), *(_num(v, n) for v, n in ((x, "x"), (y, "y"), (yaw, "yaw"), (l, "length"),
                                                               (w, "width"), (h, "height"))), k, paint or "")),
            [chunk_dd, box_dd, bx, by, byaw, bl, bw, bh, bclass, bpaint], None)
        add_box_btn.click(act(lambda es, c, k, x, y, yaw: es.add_box(index_of(c), k, _num(x, "x"), _num(y, "y"),
                                                                      float(yaw or 0))),
                          [chunk_dd, bclass, bx, by, byaw], None)
        delete_box_btn.click(act(lambda es, c, b: es.delete_box(index_of(c), box_of(b))), [chunk_dd, box_dd], None)

        def lane_of(value) -> int:
            if not value:
                raise ValueError("pick a lane first")
            return int(str(value).split(":")[0])
        move_lane_btn.click(act(lambda es, c, l, dx, dy: es.move_lane(index_of(c), lane_of(l), float(dx or 0),
                                                                      float(dy or 0))),
                            [chunk_dd, lane_dd, ldx, ldy], None)
        delete_lane_btn.click(act(lambda es, c, l: es.delete_lane(index_of(c), lane_of(l))), [chunk_dd, lane_dd], None)
        intent_btn.click(act(lambda es, t, s, m: es.apply_intent(t, s, m)), [intent, seed, images], None)
        regen_btn.click(act(lambda es, s, m: es.regenerate(s, m)), [seed, images], None)
        discard_btn.click(act(lambda es: es.discard_edits()), None, None)
        for d, b in ext_buttons.items():
            b.click(act(lambda es, c, d=d: es.extend(index_of(c), d)), [chunk_dd], None)
        ext_btn.click(act(lambda es, c, d: es.extend(index_of(c), d)), [chunk_dd, diag], None)
        roam_btn.click(act(lambda es: es.roam()), None, None)
        edit_mode_btn.click(act(lambda es: es.leave_roam()), None, None)
        undo_btn.click(act(lambda es: es.undo()), None, None)
        redo_btn.click(act(lambda es: es.redo()), None, None)

        def save(es: EditorSession, name):
            path, replaced = editor.save(es, name or "")
            es.say(f"Saved the world as '{path.name}' ({len(es.world.chunks)} chunk(s))" +
                   (", replacing the earlier save of that name." if replaced else "."))
        save_btn.click(act(save), [save_name], None)
        load_btn.click(act(lambda es, n: editor.load(es, n or "")), [load_dd], None)
        restore_btn.click(act(lambda es, n: editor.restore(es, n or "")), [restore_dd], None)
        export_btn.click(act(lambda es: editor.export(es)), None, None)

        # -- refresh -----------------------------------------------------------------------------------
        outputs = [viewer, progress, message, description, graph, gallery, chunk_dd, box_dd, bx, by, byaw, bl, bw, bh,
                   bclass, bpaint, lane_dd, history, load_dd, restore_dd, export_file]

        def refresh(request: gr.Request):
            es = es_of(request)
            return panels(es, request, editor)

        demo.load(refresh, None, outputs)
        timer.tick(refresh, None, outputs, show_progress="hidden")
        def closed(request: gr.Request) -> None:  # the tab was closed: stop its viewer (its autosave stays)
            if request is not None and request.session_hash:
                editor.close(request.session_hash)
        demo.unload(closed)
    return demo


def _num(value, name: str) -> float:
    if value is None or value == "":
        raise ValueError(f"{name} needs a number")
    return float(value)


def panels(es: EditorSession, request: gr.Request, editor: Editor) -> list:
    """Every output of the page, as gr.skip() where the session shows the same as last time."""
    shown = es.__dict__.setdefault("_shown", {})
    out = {}

    def put(key: str, value, update=None) -> None:
        if shown.get(key, object()) != value:
            shown[key] = value
            out[key] = update if update is not None else value

    host = (request.headers.get("host") or "127.0.0.1").rsplit(":", 1)[0] if request else "127.0.0.1"
    url = es.viewer.url(host)
    put("viewer", url, f"<iframe src='{url}' title='3D viewer'></iframe>")
    put("progress", progress_html(es))
    put("message", es.message)
    if shown.get("words") != es.words_version:
        shown["words"] = es.words_version
        if es.words is not None:
            out["description"] = json.dumps(es.words.description.to_json_dict(), indent=1)
            out["graph"] = es.words.graph.to_text()
        else:  # e.g. an uploaded layout: the previous scene's text would rebuild the previous scene
            out["description"] = out["graph"] = ""
    world = es.world
    sel = es.selection
    chunk = es.chunk(sel.chunk) if sel.chunk else None
    put("gallery", (id(chunk), id(chunk.views) if chunk else None, id(chunk.preview) if chunk else None,
                    id(chunk.images) if chunk else None),
        [(p.image, p.caption) for p in chunk_pictures(chunk)] if chunk is not None else [])
    names = [str(i) for i in sorted(world.chunks)] if world else []
    put("chunk", (tuple(names), str(sel.chunk)), gr.update(choices=names, value=str(sel.chunk) if sel.chunk in
                                                           (world.chunks if world else {}) else None))
    layout = es.layouts().get(sel.chunk) if sel.chunk else None
    # named by track id (what an edit in words calls a box), which a deletion does not shift
    boxes = [f"{i}: {b.track_id or b.class_name} ({b.center[0]:.1f}, {b.center[1]:.1f})" for i, b in
             enumerate(layout.boxes)] if layout else []
    box_value = boxes[sel.box] if layout and sel.box is not None and sel.box < len(boxes) else None
    put("box", (tuple(boxes), box_value), gr.update(choices=boxes, value=box_value))
    if box_value is not None:
        fields = box_fields(layout.boxes[sel.box])
        for key, v in zip(("bx", "by", "byaw", "bl", "bw", "bh", "bclass", "bpaint"), fields):
            if shown.get("fields") != fields:
                out[key] = v
        shown["fields"] = fields
    lanes = [f"{i}: {l.turn} lane {l.lane_id}" for i, l in enumerate(layout.lanes)] if layout else []
    lane_value = lanes[sel.lane] if layout and sel.lane is not None and sel.lane < len(lanes) else None
    put("lane", (tuple(lanes), lane_value), gr.update(choices=lanes, value=lane_value))
    undo, redo = es.session.history()
    edit_undo, edit_redo = es.pending.history()
    undo, redo = (edit_undo or undo), (edit_redo or (redo if not es.pending else []))  # what the buttons would do
    pending = f" - {len(es.pending)} chunk(s) with edits to regenerate" if es.pending else ""
    put("history", f"Undo: {undo[-1] if undo else '-'} | Redo: {redo[-1] if redo else '-'}{pending} | "
                   f"autosaved to `{es.session.folder}`")
    saved = editor.saved_worlds()
    put("load", tuple(saved), gr.update(choices=saved))
    if shown.get("autosaves_version") != es.version // 20 or "restore" not in shown:  # listing the disk is cheap, not free
        shown["autosaves_version"] = es.version // 20
        autos = editor.autosaves()
        put("restore", tuple(autos), gr.update(choices=autos))
    export = getattr(es, "export_path", None)
    put("export", str(export), str(export) if export else gr.update(value=None))
    order = ["viewer", "progress", "message", "description", "graph", "gallery", "chunk", "box", "bx", "by", "byaw",
             "bl", "bw", "bh", "bclass", "bpaint", "lane", "history", "load", "restore", "export"]
    return [out.get(k, gr.skip()) for k in order]
