"""A job's error stays with that job: the client never hands it to the next one."""

from __future__ import annotations

import numpy as np
import pytest

from layerbridge.client import ServerError
from tests.helpers import image_input
from tests.synthetic import flat_design as design


def test_a_refused_submit_gives_one_error_and_the_next_job_its_done(classic_server) -> None:
    image = design(64, 48, seed=4)
    seen: list[dict] = []
    with classic_server.client("refused-then-good") as client:
        # Refused on reading the submit: its input frame is already on the way behind it.
        with pytest.raises(ServerError) as refused:
            client.run("decompose", {"layers": 50}, [image_input(image)], seen.append)
        assert refused.value.code == "too_many_layers"
        result = client.run("decompose", {"layers": 2}, [image_input(image)], seen.append)
        # And a third, to be sure nothing is still queued up for later.
        again = client.run("decompose", {"layers": 2}, [image_input(np.flipud(image).copy())])
    kinds = [message["type"] for message in seen]
    assert kinds.count("error") == 1 and kinds.count("done") == 1
    assert result.done is not None and len(result.layers) == 2
    assert again.done is not None
