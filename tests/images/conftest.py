import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread():
    """The tiny image networks are far too small to gain from intra-op threads, and on a shared
    2-core machine thread contention makes single calls 50x slower; restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
