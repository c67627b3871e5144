"""One model for every image format: Image -> Task -> Mm -> Vma -> pages.

Nothing above this package knows which format an image came from.
"""

from crfs.model.image import Creds, Exit, Futex, Image, Mm, ShmSegment, Task, Vma
from crfs.model.pages import PageMap
from crfs.model.registers import Registers

__all__ = ["Creds", "Exit", "Futex", "Image", "Mm", "PageMap", "Registers", "ShmSegment", "Task", "Vma"]
