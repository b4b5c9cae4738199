"""The embedded offline engine behind the built-in `local-edit` and `local-draw` models.

No model weights and no network. For edits the prompt is read as a list of classic image operations
(grayscale, blur, rotate, pencil sketch, ...) that OpenCV applies, with a mask inpainted first; a
variation is the variant jitter alone; a generation draws a deterministic picture from the prompt
(draw.py). Pure, synchronous and CPU-bound; async callers run these in a worker thread.
"""

from imagegate.engine.draw import LAYERS, draw_images, draw_layers, finish
from imagegate.engine.operations import UnsupportedPrompt, understood_operations
from imagegate.engine.picture import encode
from imagegate.engine.render import edit_images, vary_images

__all__ = ["LAYERS", "UnsupportedPrompt", "draw_images", "draw_layers", "edit_images", "encode", "finish",
           "understood_operations", "vary_images"]
