"""The xscene editor: a Gradio page with an embedded viser 3D viewer per browser session (UI only; it talks
to xscene_core through its public API). Start it with `python launch.py` or `app.server.launch()`."""
