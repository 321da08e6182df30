from __future__ import annotations

import pytest

from services.kit.server import RunningService
from tests.support import Platform


@pytest.fixture
async def rewards(platform: Platform) -> RunningService:
    return await platform.start("rewards")
