"""The socket-free process group of a one-process world (api/single_rank_group.py).

Run in a child interpreter: the group replaces gloo for the whole process and
torch.distributed can be initialized once per process."""

from __future__ import annotations

import subprocess
import sys
import textwrap


CHILD = textwrap.dedent('''
    import os, sys, tempfile
    import psutil, torch, torch.distributed as dist
    from sglang_arctic.api.single_rank_group import BACKEND_NAME, use_for_gloo_in_single_process

    use_for_gloo_in_single_process()
    store = os.path.join(tempfile.mkdtemp(), "store")
    # what SGLang asks for on CPU: gloo, for the world and for each group
    dist.init_process_group(backend="gloo", init_method="file://" + store, rank=0, world_size=1)
    group = dist.new_group([0], backend="gloo")
    x = torch.arange(6.0)
    for g in (None, group):
        assert dist.get_backend(g) == BACKEND_NAME, dist.get_backend(g)
        dist.all_reduce(x, group=g); dist.broadcast(x, 0, group=g); dist.barrier(group=g)
        dist.monitored_barrier(group=g)
        dist.reduce(x, 0, group=g); dist.all_reduce(x, group=g, async_op=True).wait()
        assert torch.equal(x, torch.arange(6.0)), x  # the identity, not a sum or a zero
        out = [torch.zeros(6)]; dist.all_gather(out, x, group=g); assert torch.equal(out[0], x)
        for op in (dist.all_gather_into_tensor, dist.reduce_scatter_tensor, dist.all_to_all_single):
            o = torch.zeros(6); op(o, x, group=g); assert torch.equal(o, x), op
        o = torch.zeros(6); dist.reduce_scatter(o, [x], group=g); assert torch.equal(o, x)
        o = [torch.zeros(6)]; dist.all_to_all(o, [x], group=g); assert torch.equal(o[0], x)
        o = [torch.zeros(6)]; dist.gather(x, o, dst=0, group=g); assert torch.equal(o[0], x)
        o = torch.zeros(6); dist.scatter(o, [x], src=0, group=g); assert torch.equal(o, x)
        objs = [None]; dist.all_gather_object(objs, {"a": 1}, group=g); assert objs == [{"a": 1}]
        objs = [{"b": 2}]; dist.broadcast_object_list(objs, 0, group=g); assert objs == [{"b": 2}]
    me = psutil.Process()
    listening = [c for c in psutil.net_connections(kind="inet") if c.pid == me.pid]
    assert listening == [], listening
    print("OK")
''')


def test_single_rank_group_is_the_identity_and_opens_no_socket():
    # Pass: gloo asked for in a one-process world gives our group; every
    # collective SGLang uses leaves or copies the data as one rank must; the
    # process holds no socket at all (gloo held a listening one per group).
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-3000:]


def test_a_larger_world_keeps_gloo():
    # Pass: the redirect applies to a world of one only (bound arguments checked
    # before the call; no process group is created here).
    from sglang_arctic.api import single_rank_group as S

    seen = {}

    def fake_init(backend=None, init_method=None, world_size=-1, rank=-1):
        seen.update(backend=backend, world_size=world_size)

    wrapped = S._redirect_gloo(fake_init, lambda a: a.get("world_size", -1))
    wrapped(backend="gloo", world_size=2, rank=0)
    assert seen == {"backend": "gloo", "world_size": 2}
    wrapped("gloo", world_size=1, rank=0)
    assert seen == {"backend": S.BACKEND_NAME, "world_size": 1}
