"""The embedded offline image-edit engine behind the built-in `local-edit` model.

No model weights and no network: the prompt is read as a list of classic image operations (grayscale,
blur, rotate, pencil sketch, ...) that OpenCV applies, with a mask inpainted first. Pure, synchronous and
CPU-bound; async callers run `edit_images` in a worker thread.
"""

from imagegate.engine.operations import UnsupportedPrompt, understood_operations
from imagegate.engine.render import edit_images

__all__ = ["UnsupportedPrompt", "edit_images", "understood_operations"]
