"""Text from one backend, reverse image search from another (e.g. web text + the embedded image index)."""
from __future__ import annotations

from PIL import Image

from hyperseyes_verl.search.base import Hit, SearchBackend, backend_metrics


class CompositeBackend:
    def __init__(self, text: SearchBackend, image: SearchBackend):
        self.text, self.image = text, image
        self.name = f"{text.name}+{image.name}"

    async def text_search(self, query: str, k: int) -> list[Hit]:
        return await self.text.text_search(query, k)

    async def image_search(self, image: Image.Image, k: int) -> list[Hit]:
        return await self.image.image_search(image, k)

    def metrics(self) -> dict[str, float]:
        return {**backend_metrics(self.text), **backend_metrics(self.image)}

    async def aclose(self) -> None:
        await self.text.aclose()
        if self.image is not self.text:
            await self.image.aclose()
