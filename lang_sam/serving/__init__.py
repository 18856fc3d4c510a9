"""Serving models to people and programs: a locked model holder (:mod:`~lang_sam.serving.service`),
the HTTP server (:mod:`~lang_sam.serving.server`, extra ``[server]``) and the Gradio demo
(:mod:`~lang_sam.serving.app`, extra ``[app]``). Importing this package imports neither FastAPI
nor Gradio."""

from lang_sam.serving.service import ModelService

__all__ = ["ModelService"]
