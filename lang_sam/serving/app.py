"""The web demo (Gradio): the original's controls plus the GroundingDINO type.

    python -m lang_sam.serving.app --port 7860        # or: lang-sam app

Install with ``pip install "lang-sam[app]"``. Also mounted at ``/gradio`` by the HTTP server.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from lang_sam.serving.service import ModelService, add_model_arguments, service_from_args

logger = logging.getLogger(__name__)

__all__ = ["build_demo", "segment", "main"]

ASSETS = Path(__file__).resolve().parents[2] / "assets"
EXAMPLES = [("cat.jpg", "cat"), ("coffee.jpg", "cup. spoon"), ("astronaut.jpg", "person. flag. helmet")]
HEADERS = ["phrase", "score", "x0", "y0", "x1", "y1"]


def segment(service: ModelService, image, text_prompt, sam_type, gdino_type, box_threshold,
            text_threshold, progress=None):
    """Run one request; returns ``(overlay, rows, message)``. Errors become a readable message."""
    from lang_sam.errors import InvalidPromptError, LangSAMError
    from lang_sam.labeling.formats import detection_labels
    from lang_sam.utils import draw_image
    from lang_sam.validation import check_prompt, to_rgb_pil

    def report(fraction, text):
        if progress is not None:
            progress(fraction, desc=text)

    if image is None:
        return None, [], "**Error:** upload an image first."
    try:
        check_prompt(text_prompt)
    except InvalidPromptError as exc:
        return None, [], f"**Error:** {exc}"
    try:
        result = service.predict(image, text_prompt, box_threshold, text_threshold,
                                 sam_type=sam_type, gdino_type=gdino_type, progress=report)
    except (LangSAMError, ValueError, OSError) as exc:
        logger.info("demo request failed: %s", exc)
        return None, [], f"**Error:** {exc}"
    labels = detection_labels(result.phrases, result.logits)
    overlay = draw_image(np.asarray(to_rgb_pil(image)), result.masks, result.boxes, labels)
    rows = [[p, round(s, 3), *[round(v, 1) for v in box]]
            for p, s, box in zip(result.phrases, result.logits.tolist(), result.boxes.tolist())]
    return overlay, rows, f"{len(rows)} detection(s) for `{text_prompt}`."


def build_demo(service: ModelService):
    """The Gradio Blocks of the demo, bound to ``service``."""
    import gradio as gr

    from lang_sam.hub import GDINO_MODELS, SAM_MODELS

    def run(image, text_prompt, sam_type, gdino_type, box_threshold, text_threshold,
            progress=gr.Progress()):
        return segment(service, image, text_prompt, sam_type, gdino_type, box_threshold,
                       text_threshold, progress)

    with gr.Blocks(title="lang-sam", analytics_enabled=False) as demo:
        gr.Markdown("# lang-sam\nSegment objects from a text prompt: GroundingDINO finds boxes, "
                    "Segment Anything turns each box into a mask. Separate classes with `.`.")
        with gr.Row():
            with gr.Column():
                sam_type = gr.Dropdown(sorted(SAM_MODELS), value=service.sam_type, label="SAM model",
                                       elem_id="sam-type")
                gdino_type = gr.Dropdown(sorted(GDINO_MODELS), value=service.gdino_type,
                                         label="GroundingDINO model", elem_id="gdino-type")
                box_threshold = gr.Slider(0, 1, value=0.3, step=0.01, label="Box threshold",
                                          elem_id="box-threshold")
                text_threshold = gr.Slider(0, 1, value=0.25, step=0.01, label="Text threshold",
                                           elem_id="text-threshold")
                image = gr.Image(type="pil", label="Image", elem_id="input-image")
                prompt = gr.Textbox(label="Text prompt", placeholder="car. wheel", elem_id="prompt")
                button = gr.Button("Segment", variant="primary", elem_id="run")
            with gr.Column():
                output = gr.Image(label="Segmented image", elem_id="output-image", interactive=False)
                status = gr.Markdown(elem_id="status")
                table = gr.Dataframe(headers=HEADERS, label="Detections", elem_id="detections",
                                     interactive=False)
        examples = [[str(ASSETS / name), text] for name, text in EXAMPLES if (ASSETS / name).is_file()]
        if examples:
            gr.Examples(examples, inputs=[image, prompt])
        button.click(run, inputs=[image, prompt, sam_type, gdino_type, box_threshold, text_threshold],
                     outputs=[output, table, status])
    return demo


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="lang-sam app", description="lang-sam web demo")
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service = service_from_args(args)
    demo = build_demo(service)
    demo.queue().launch(server_name=args.host, server_port=args.port, share=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
