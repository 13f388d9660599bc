"""The scheduler end to end: the real `cargo-distbuild scheduler run`,
driven by python3-grpcio clients and scripted workers (sched_harness).
Run: python3 test_scheduler.py BINARY [TestClass ...]
"""
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

import grpc

import sched_harness as h
from sched_harness import STAGE, re_pb2, worker_pb2

BINARY = None


class SchedTestBase(unittest.TestCase):
    extra = ("--heartbeat-ms", "200", "--queue-timeout", "1")

    def setUp(self):
        self.sched = h.Scheduler(BINARY, self.extra)
        self.before_start()
        self.started = time.time()
        self.target = self.sched.start()
        self.client = h.Client(self.target)
        self.workers = []

    def tearDown(self):
        for w in self.workers:
            w.stop()
        self.client.close()
        rc = self.sched.stop()
        if self._outcome_failed():
            sys.stderr.write("--- scheduler log ---\n" + self.sched.output())
        self.sched.close()
        shutil.rmtree(self.sched.dir, ignore_errors=True)
        self.assertEqual(rc, 0, "scheduler must exit 0 on SIGTERM")

    def before_start(self):
        """Hook: prepare self.sched.dir before the scheduler starts."""

    def dispatch(self, w, **action):
        """Submit a new action (make_action keywords) and take its
        assignment on worker w. Returns (the Execute call, the assignment)."""
        d, _ = self.client.make_action(**action)
        call = self.client.execute_call(d)
        return call, w.next_assignment()

    def abandon(self, w):
        """Submit a new action, let w take it, then drop the Execute
        stream as a client that goes away does. Returns (action digest,
        the assignment, the operation name)."""
        d, _ = self.client.make_action()
        call = self.client.execute_call(d)
        a = w.next_assignment()
        name = h.operations_pb2.Operation.FromString(next(call)).name
        call.cancel()
        return d, a, name

    def _outcome_failed(self):
        res = getattr(self, "_outcome", None)
        errs = getattr(res, "errors", None) or []
        return any(e for _, e in errs) or bool(
            getattr(getattr(res, "result", None), "failures", []))

    def worker(self, wid="w1", **kw):
        w = h.FakeWorker(self.target, wid, **kw).start()
        self.workers.append(w)
        return w

    def wait_for(self, cond, timeout=10, what="condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.02)
        self.fail("timed out waiting for " + what)

    def expect_rpc_error(self, fn, code):
        with self.assertRaises(grpc.RpcError) as cm:
            fn()
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception


class ExecTest(SchedTestBase):
    def test_capabilities_advertise_execution(self):
        caps = self.client.unary(h.CAPS, re_pb2.GetCapabilitiesRequest(),
                                 re_pb2.ServerCapabilities)
        self.assertTrue(caps.execution_capabilities.exec_enabled)
        self.assertTrue(caps.cache_capabilities.digest_functions)

    def test_execute_stages_and_result(self):
        w = self.worker()
        d, named = self.client.make_action()
        ops = self.client.execute(d)
        stages = [h.stage_of(o) for o in ops]
        self.assertEqual(stages[0], STAGE.QUEUED)
        self.assertIn(STAGE.EXECUTING, stages)
        self.assertEqual(stages[-1], STAGE.COMPLETED)
        self.assertTrue(all(not o.done for o in ops[:-1]))
        self.assertTrue(ops[-1].name.startswith("operations/"))
        self.assertEqual(len({o.name for o in ops}), 1)
        r = h.response_of(ops[-1])
        self.assertEqual(r.status.code, 0)
        self.assertFalse(r.cached_result)
        self.assertEqual(r.result.exit_code, 0)
        self.assertFalse(ops[-1].HasField("error"))
        self.assertEqual(len(w.assignments), 1)
        a = w.assignments[0]
        self.assertEqual(a.action_digest, d)
        self.assertEqual(a.attempt, 1)
        self.assertEqual(a.timeout_ms, 600000)  # default imposed
        self.assertTrue(a.lease_id)
        # The Action and Command travel with the Assignment, byte for byte
        # as stored, so the worker need not fetch them.
        self.assertEqual(h.pbd(a.action), named["action"])
        self.assertEqual(h.pbd(a.command), named["command"])
        # So do the input root's Directory messages the scheduler read.
        key = lambda d: (d.hash, d.size_bytes)
        self.assertEqual(sorted(key(h.pbd(b)) for b in a.directories),
                         sorted(key(named[n]) for n in ("root", "src")))
        log = self.sched.output()
        for s in ("job submitted", "dispatching", "job completed",
                  "worker joined: w1"):
            self.assertIn(s, log)

    def test_progress_relays_early_outputs(self):
        # A worker's EarlyOutputs (rustc's .rmeta before the .rlib) reach
        # the Execute client while the action is still EXECUTING.
        w = self.worker(mode="manual")
        call, a = self.dispatch(w, outputs=("out", "lib.rmeta"))
        it = iter(call)
        first = []
        self.wait_for(lambda: first.append(
            h.operations_pb2.Operation.FromString(next(it))) or
            h.stage_of(first[-1]) == STAGE.EXECUTING, what="EXECUTING")
        rmeta = b"rmeta bytes " + a.lease_id.encode()
        prefix = (b'{"$message_type":"artifact","artifact":"lib.rmeta",'
                  b'"emit":"metadata"}\n')
        w.progress(a, {"lib.rmeta": rmeta}, prefix)
        # Stage updates may be repeated meanwhile: skip to the early one.
        op = h.operations_pb2.Operation.FromString(next(it))
        while not op.done and h.early_of(op) is None:
            op = h.operations_pb2.Operation.FromString(next(it))
        self.assertFalse(op.done, "EarlyOutputs before the end")
        self.assertEqual(h.stage_of(op), STAGE.EXECUTING)
        e = h.early_of(op)
        self.assertIsNotNone(e, "EarlyOutputs in partial metadata")
        self.assertEqual(e.stderr_prefix, prefix)
        self.assertEqual([(f.path, f.digest) for f in e.files],
                         [("lib.rmeta", h.pbd(rmeta))])
        # The blob is fetchable now, before the action completes.
        r = self.client.unary(h.CAS + "BatchReadBlobs",
                              re_pb2.BatchReadBlobsRequest(
                                  digests=[h.pbd(rmeta)]),
                              re_pb2.BatchReadBlobsResponse)
        self.assertEqual(r.responses[0].data, rmeta)
        w.complete(a)
        rest = [h.operations_pb2.Operation.FromString(m) for m in it]
        self.assertTrue(rest[-1].done)
        self.assertEqual(h.response_of(rest[-1]).status.code, 0)

    def test_progress_inline_early_outputs(self):
        # Small early files come inline: the scheduler checks and stores
        # them, and relays them inline, so the client needs no CAS read.
        w = self.worker(mode="manual")
        call, a = self.dispatch(w, outputs=("lib.d", "lib.rmeta"))
        it = iter(call)
        rmeta = b"inline rmeta " + a.lease_id.encode()
        dep = b"lib.rmeta: src/lib.rs\n"
        files = {"lib.rmeta": rmeta, "lib.d": dep}
        # Contents that do not match the digest: refused, nothing stored.
        self.expect_rpc_error(
            lambda: w.progress(a, files, b"",
                               inline={"lib.rmeta": rmeta + b"!",
                                       "lib.d": dep}),
            grpc.StatusCode.INVALID_ARGUMENT)
        missing = self.client.unary(
            h.CAS + "FindMissingBlobs",
            re_pb2.FindMissingBlobsRequest(blob_digests=[h.pbd(rmeta)]),
            re_pb2.FindMissingBlobsResponse)
        self.assertEqual(list(missing.missing_blob_digests), [h.pbd(rmeta)])
        prefix = b'{"$message_type":"artifact","emit":"metadata"}\n'
        w.progress(a, files, prefix, inline=files)
        op = h.operations_pb2.Operation.FromString(next(it))
        while not op.done and h.early_of(op) is None:
            op = h.operations_pb2.Operation.FromString(next(it))
        self.assertFalse(op.done, "EarlyOutputs before the end")
        e = h.early_of(op)
        self.assertIsNotNone(e)
        self.assertEqual(e.stderr_prefix, prefix)
        self.assertEqual(
            sorted((f.path, f.digest.hash, f.contents) for f in e.files),
            sorted((p, h.pbd(b).hash, b) for p, b in files.items()))
        r = self.client.unary(h.CAS + "BatchReadBlobs",
                              re_pb2.BatchReadBlobsRequest(
                                  digests=[h.pbd(rmeta), h.pbd(dep)]),
                              re_pb2.BatchReadBlobsResponse)
        self.assertEqual(sorted(x.data for x in r.responses),
                         sorted([rmeta, dep]))
        w.complete(a)
        rest = [h.operations_pb2.Operation.FromString(m) for m in it]
        self.assertTrue(rest[-1].done)

    def test_progress_bad_requests(self):
        w = self.worker(mode="manual")
        call, a = self.dispatch(w)
        # A blob the CAS does not have: refused, nothing relayed.
        self.expect_rpc_error(
            lambda: w.progress(a, {"out": b"never uploaded"}, b"",
                               upload=False),
            grpc.StatusCode.FAILED_PRECONDITION)
        # Malformed protobuf.
        self.expect_rpc_error(
            lambda: w.ch.unary_unary(h.WS + "Progress")(b"\xff\xff\xff",
                                                         timeout=5),
            grpc.StatusCode.INVALID_ARGUMENT)
        # No EarlyOutputs / a file without a digest.
        self.expect_rpc_error(
            lambda: w.unary(h.WS + "Progress", worker_pb2.ProgressRequest(
                lease_id=a.lease_id), worker_pb2.ProgressResponse),
            grpc.StatusCode.INVALID_ARGUMENT)
        self.expect_rpc_error(
            lambda: w.unary(h.WS + "Progress", worker_pb2.ProgressRequest(
                lease_id=a.lease_id, early=worker_pb2.EarlyOutputs(
                    files=[re_pb2.OutputFile(path="out")])),
                worker_pb2.ProgressResponse),
            grpc.StatusCode.INVALID_ARGUMENT)
        # A stale lease or another session: accepted, ignored.
        w.progress(a, {"out": b"x"}, b"", session="not-this-session")
        w.complete(a)
        ops = [h.operations_pb2.Operation.FromString(m) for m in call]
        self.assertTrue(ops[-1].done)
        self.assertTrue(all(h.early_of(o) is None for o in ops),
                        "nothing relayed for refused or stale Progress")
        w.progress(a, {"out": b"y"}, b"")  # lease over: ignored, OK

    def test_cache_hit_without_worker(self):
        w = self.worker()
        d, _ = self.client.make_action()
        self.client.execute(d)
        w.stop()
        self.workers.remove(w)
        ops = self.client.execute(d)
        self.assertEqual(len(ops), 1)
        self.assertEqual(h.stage_of(ops[0]), STAGE.COMPLETED)
        r = h.response_of(ops[0])
        self.assertTrue(r.cached_result)
        self.assertEqual(r.result.exit_code, 0)
        self.assertEqual(len(w.assignments), 1)
        ar = self.client.unary(h.AC + "GetActionResult",
                               re_pb2.GetActionResultRequest(action_digest=d),
                               re_pb2.ActionResult)
        self.assertEqual(ar.exit_code, 0)
        self.assertIn("cache hit", self.sched.output())
        # The hit's operation name resolves too.
        got = list(self.client.wait_call(ops[0].name))
        self.assertEqual(len(got), 1)

    def test_skip_cache_lookup_executes_again(self):
        w = self.worker()
        d, _ = self.client.make_action()
        self.client.execute(d)
        ops = self.client.execute(d, skip_cache_lookup=True)
        self.assertFalse(h.response_of(ops[-1]).cached_result)
        self.assertEqual(len(w.assignments), 2)

    def test_do_not_cache(self):
        w = self.worker(slots=2, mode="manual")
        d, _ = self.client.make_action(do_not_cache=True)
        calls = [self.client.execute_call(d) for _ in range(2)]
        a1 = w.next_assignment()
        a2 = w.next_assignment()  # not merged: two runs
        w.complete(a1)
        w.complete(a2)
        for c in calls:
            ops = [h.operations_pb2.Operation.FromString(m) for m in c]
            self.assertEqual(h.response_of(ops[-1]).status.code, 0)
        self.expect_rpc_error(lambda: self.client.unary(
            h.AC + "GetActionResult",
            re_pb2.GetActionResultRequest(action_digest=d),
            re_pb2.ActionResult), grpc.StatusCode.NOT_FOUND)
        c3 = self.client.execute_call(d)
        w.complete(w.next_assignment())  # third run: nothing was cached
        self.assertTrue(h.operations_pb2.Operation.FromString(
            list(c3)[-1]).done)

    def test_failing_action_not_cached(self):
        w = self.worker(exit_code=1)
        d, _ = self.client.make_action()
        r = h.response_of(self.client.execute(d)[-1])
        self.assertEqual(r.status.code, 0)
        self.assertEqual(r.result.exit_code, 1)
        self.expect_rpc_error(lambda: self.client.unary(
            h.AC + "GetActionResult",
            re_pb2.GetActionResultRequest(action_digest=d),
            re_pb2.ActionResult), grpc.StatusCode.NOT_FOUND)
        r2 = h.response_of(self.client.execute(d)[-1])
        self.assertFalse(r2.cached_result)
        self.assertEqual(len(w.assignments), 2)

    def test_twenty_identical_submissions_run_once(self):
        w = self.worker(mode="manual", slots=4)
        d, _ = self.client.make_action()
        first_seen = threading.Barrier(21)
        results = []

        def run():
            c = self.client.execute_call(d)
            ops = []
            for m in c:
                ops.append(h.operations_pb2.Operation.FromString(m))
                if len(ops) == 1:
                    first_seen.wait(10)
            results.append(ops)

        ts = [threading.Thread(target=run) for _ in range(20)]
        for t in ts:
            t.start()
        first_seen.wait(10)
        a = w.next_assignment()
        time.sleep(0.2)
        w.complete(a)
        for t in ts:
            t.join(10)
        self.assertEqual(len(results), 20)
        self.assertEqual(len(w.assignments), 1)
        names = {ops[-1].name for ops in results}
        self.assertEqual(len(names), 1)
        for ops in results:
            r = h.response_of(ops[-1])
            self.assertEqual(r.result.exit_code, 0)
        self.assertEqual(self.sched.metric(
            'distbuild_scheduler_actions_total{outcome="merged"}'), 19)

    def test_wait_execution_reattach_and_not_found(self):
        w = self.worker(mode="manual")
        d, _ = self.client.make_action()
        call = self.client.execute_call(d)
        first = h.operations_pb2.Operation.FromString(next(call))
        a = w.next_assignment()
        call.cancel()  # broken stream: the action must go on
        wc = self.client.wait_call(first.name)
        cur = h.operations_pb2.Operation.FromString(next(wc))
        self.assertEqual(cur.name, first.name)
        self.assertEqual(h.stage_of(cur), STAGE.EXECUTING)
        w.complete(a)
        rest = [h.operations_pb2.Operation.FromString(m) for m in wc]
        self.assertTrue(rest[-1].done)
        self.assertEqual(h.response_of(rest[-1]).result.exit_code, 0)
        # After completion: answered at once, still resolvable.
        again = list(self.client.wait_call(first.name))
        self.assertEqual(len(again), 1)
        self.expect_rpc_error(
            lambda: list(self.client.wait_call("operations/nope")),
            grpc.StatusCode.NOT_FOUND)

    def test_deadline_exceeded_passed_through(self):
        w = self.worker(mode="manual")
        call, a = self.dispatch(w, timeout_s=5)
        self.assertEqual(a.timeout_ms, 5000)
        w.complete(a, exit_code=-1, status_code=4, message="timed out")
        ops = [h.operations_pb2.Operation.FromString(m) for m in call]
        r = h.response_of(ops[-1])
        self.assertEqual(r.status.code, 4)
        self.assertEqual(len(w.assignments), 1)


class ValidationTest(SchedTestBase):
    def test_missing_inputs_precondition_failure(self):
        d, dg = self.client.make_action(skip_upload=("command", "lib.rs",
                                                      "inner.rs"))
        err = self.expect_rpc_error(lambda: self.client.execute(d),
                                    grpc.StatusCode.FAILED_PRECONDITION)
        st = h.status_details(err)
        self.assertIsNotNone(st, "grpc-status-details-bin missing")
        self.assertEqual(st.code, 9)
        pf = h.error_details_pb2.PreconditionFailure()
        self.assertEqual(st.details[0].type_url,
                         "type.googleapis.com/google.rpc.PreconditionFailure")
        self.assertTrue(st.details[0].Unpack(pf))
        subjects = {v.subject for v in pf.violations}
        self.assertTrue(all(v.type == "MISSING" for v in pf.violations))
        want = {"blobs/%s/%d" % (dg[n].hash, dg[n].size_bytes)
                for n in ("command", "lib.rs", "inner.rs")}
        self.assertEqual(subjects, want)

    def test_missing_action_blob(self):
        d, _ = self.client.make_action(skip_upload=("action",))
        err = self.expect_rpc_error(lambda: self.client.execute(d),
                                    grpc.StatusCode.FAILED_PRECONDITION)
        pf = h.error_details_pb2.PreconditionFailure()
        h.status_details(err).details[0].Unpack(pf)
        self.assertEqual([v.subject for v in pf.violations],
                         ["blobs/%s/%d" % (d.hash, d.size_bytes)])

    def test_missing_subdirectory(self):
        d, dg = self.client.make_action(skip_upload=("src",))
        err = self.expect_rpc_error(lambda: self.client.execute(d),
                                    grpc.StatusCode.FAILED_PRECONDITION)
        pf = h.error_details_pb2.PreconditionFailure()
        h.status_details(err).details[0].Unpack(pf)
        self.assertEqual([v.subject for v in pf.violations],
                         ["blobs/%s/%d" % (dg["src"].hash,
                                           dg["src"].size_bytes)])

    def test_empty_argv(self):
        d, _ = self.client.make_action(argv=())
        err = self.expect_rpc_error(lambda: self.client.execute(d),
                                    grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("argv", err.details())

    def test_output_path_escapes(self):
        for bad in ("../x", "a/../../x", "/etc/passwd"):
            d, _ = self.client.make_action(outputs=(bad,))
            err = self.expect_rpc_error(lambda: self.client.execute(d),
                                        grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(bad, err.details())

    def test_timeout_above_max(self):
        d, _ = self.client.make_action(timeout_s=2 * 3600)
        err = self.expect_rpc_error(lambda: self.client.execute(d),
                                    grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("timeout", err.details())


class WorkerTest(SchedTestBase):
    def test_platform_mismatch_bounded_wait(self):
        # Just started: a worker of that platform may still join, so the
        # action waits until the scheduler has been up for the queue
        # timeout (1 s), then fails.
        self.worker(plat=h.platform(OSFamily="linux"))
        d, _ = self.client.make_action(
            action_plat=h.platform(OSFamily="windows"))
        t0 = time.time()
        r = h.response_of(self.client.execute(d)[-1])
        took = time.time() - t0
        self.assertEqual(r.status.code, 9)  # FAILED_PRECONDITION
        self.assertIn("OSFamily=windows", r.status.message)
        self.assertGreaterEqual(took + (t0 - self.started), 0.9)
        self.assertLess(took, 5)

    def test_long_unmatched_platform_fails_at_once(self):
        # Workers are connected, but none of this platform has been for the
        # queue timeout (a -C target-cpu=native action from a client whose
        # CPU no worker has): fail at once, not after another timeout.
        w = self.worker(plat=h.platform(OSFamily="linux", cpu="a"))
        time.sleep(1.2)
        d, _ = self.client.make_action(
            salt="b", action_plat=h.platform(OSFamily="linux", cpu="b"))
        t = time.time()
        r = h.response_of(self.client.execute(d)[-1])
        self.assertLess(time.time() - t, 0.6)
        self.assertEqual(r.status.code, 9)
        self.assertIn("cpu=b", r.status.message)
        # Actions the connected worker matches still run.
        d, _ = self.client.make_action(
            salt="a", action_plat=h.platform(OSFamily="linux", cpu="a"))
        self.assertEqual(h.response_of(self.client.execute(d)[-1])
                         .status.code, 0)
        self.assertEqual(len(w.assignments), 1)
        # A worker of platform b that has just left may come back: an
        # action for b waits for it (and runs when it does).
        wb = self.worker("wb", plat=h.platform(OSFamily="linux", cpu="b"))
        wb.drop()
        self.wait_for(lambda: self.sched.metric(
            "distbuild_scheduler_workers") == 1, what="wb to leave")
        d, _ = self.client.make_action(
            salt="b2", action_plat=h.platform(OSFamily="linux", cpu="b"))
        call = self.client.execute_call(d)
        time.sleep(0.5)
        wb2 = self.worker("wb2", plat=h.platform(OSFamily="linux", cpu="b"))
        ops = [h.operations_pb2.Operation.FromString(m) for m in call]
        self.assertEqual(h.response_of(ops[-1]).status.code, 0)
        self.assertEqual(len(wb2.assignments), 1)

    def test_command_platform_fallback_matches(self):
        w = self.worker(plat=h.platform(OSFamily="linux", arch="x86_64"))
        d, _ = self.client.make_action(plat=h.platform(arch="x86_64"))
        r = h.response_of(self.client.execute(d)[-1])
        self.assertEqual(r.status.code, 0)
        self.assertEqual(len(w.assignments), 1)

    def test_no_worker_unavailable(self):
        d, _ = self.client.make_action()
        r = h.response_of(self.client.execute(d)[-1])
        self.assertEqual(r.status.code, 14)
        self.assertIn("no worker", r.status.message)

    def test_long_workerless_fails_at_once(self):
        # No worker for the queue timeout (1 s) already: an action fails
        # at once rather than waiting the timeout out again.
        time.sleep(1.2)
        d, _ = self.client.make_action(salt="late")
        t = time.time()
        r = h.response_of(self.client.execute(d)[-1])
        took = time.time() - t
        self.assertEqual(r.status.code, 14)
        self.assertIn("no worker connected", r.status.message)
        self.assertLess(took, 0.6)
        # A worker that joins ends it; once the last worker leaves, actions
        # get the whole timeout again for one to come back.
        w = self.worker()
        d, _ = self.client.make_action(salt="with-worker")
        self.assertEqual(h.response_of(self.client.execute(d)[-1])
                         .status.code, 0)
        w.drop()
        self.wait_for(lambda: self.sched.metric(
            "distbuild_scheduler_workers") == 0, what="the worker to leave")
        d, _ = self.client.make_action(salt="after")
        call = self.client.execute_call(d)
        time.sleep(0.5)
        w2 = self.worker("w2")
        ops = [h.operations_pb2.Operation.FromString(m) for m in call]
        self.assertEqual(h.response_of(ops[-1]).status.code, 0)
        self.assertEqual(len(w2.assignments), 1)

    def test_worker_drop_requeues_to_other_worker(self):
        w1 = self.worker("w1", mode="manual")
        d, _ = self.client.make_action()
        call = self.client.execute_call(d)
        w1.next_assignment()
        w2 = self.worker("w2")
        w1.drop()
        ops = [h.operations_pb2.Operation.FromString(m) for m in call]
        r = h.response_of(ops[-1])
        self.assertEqual(r.status.code, 0)
        self.assertEqual(r.result.execution_metadata.worker, "w2")
        self.assertEqual(w2.assignments[0].attempt, 2)
        self.assertNotEqual(w2.assignments[0].lease_id,
                            w1.assignments[0].lease_id)
        # The scheduler re-sends the current stage periodically as a
        # keepalive; count transitions, not messages.
        stages = [h.stage_of(o) for o in ops]
        transitions = [x for i, x in enumerate(stages)
                       if i == 0 or stages[i - 1] != x]
        self.assertEqual(transitions.count(STAGE.EXECUTING), 2, stages)
        log = self.sched.output()
        self.assertIn("job requeued", log)
        self.assertIn("worker left: w1", log)
        self.assertEqual(self.sched.metric(
            'distbuild_scheduler_actions_total{outcome="requeued"}'), 1)

    def test_three_lost_attempts_fail_unavailable(self):
        d, _ = self.client.make_action()
        call = self.client.execute_call(d)
        w = self.worker("flaky", mode="manual")
        w.next_assignment()
        w.drop()  # attempt 1: stream closed
        w = self.worker("flaky", mode="manual")  # rejoin, new session
        w.next_assignment()
        w.drop()
        w = self.worker("flaky", mode="manual", heartbeat=False)
        w.next_assignment()  # attempt 3: heartbeats stop, stream open
        ops = [h.operations_pb2.Operation.FromString(m) for m in call]
        r = h.response_of(ops[-1])
        self.assertEqual(r.status.code, 14)
        self.assertIn("3 attempts", r.status.message)
        self.assertIn("heartbeat", r.status.message)
        # A Complete for the dead lease is ignored.
        w2 = self.worker("late", mode="manual")
        stale = worker_pb2.CompleteRequest(
            worker_id="late", session_id=w2.session,
            lease_id=w.assignments[0].lease_id)
        w2.ch.unary_unary(h.WS + "Complete")(stale.SerializeToString())

    def test_scheduler_stall_keeps_workers(self):
        # The scheduler stopped for 7 heartbeat intervals (a frozen or
        # swapped-out host) finds its workers' heartbeats waiting when it
        # resumes: no worker is dropped, the running action stays put.
        w = self.worker(mode="manual")
        call, a = self.dispatch(w)
        self.sched.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.4)
        finally:
            self.sched.proc.send_signal(signal.SIGCONT)
        time.sleep(0.8)  # 4 intervals: a worker really silent is gone
        w.complete(a)
        ops = [h.operations_pb2.Operation.FromString(m) for m in call]
        r = h.response_of(ops[-1])
        self.assertEqual(r.status.code, 0, r.status.message)
        self.assertEqual(r.result.execution_metadata.worker, "w1")
        log = self.sched.output()
        self.assertNotIn("worker left", log)
        self.assertIn("did not run for", log)
        self.assertEqual(self.sched.metric(
            'distbuild_scheduler_actions_total{outcome="requeued"}'), 0)
        self.assertEqual(self.sched.metric("distbuild_scheduler_workers"), 1)
        self.assertEqual(len(w.assignments), 1)

    def test_rejoin_same_id_requeues_old_session(self):
        w1 = self.worker("same", mode="manual")
        d, _ = self.client.make_action()
        call = self.client.execute_call(d)
        w1.next_assignment()
        w1b = self.worker("same")  # new session while old one is open
        ops = [h.operations_pb2.Operation.FromString(m) for m in call]
        self.assertEqual(h.response_of(ops[-1]).status.code, 0)
        self.assertEqual(w1b.assignments[0].attempt, 2)

    def test_worker_infra_error_retried(self):
        w = self.worker(mode="manual")
        call, a = self.dispatch(w)
        w.complete(a, status_code=14, message="fetch failed")
        b = w.next_assignment()
        self.assertEqual(b.attempt, 2)
        w.complete(b)
        ops = [h.operations_pb2.Operation.FromString(m) for m in call]
        self.assertEqual(h.response_of(ops[-1]).status.code, 0)

    def test_heartbeat_cancels_unknown_leases(self):
        w = self.worker(mode="manual", heartbeat=False)
        resp = worker_pb2.HeartbeatResponse.FromString(
            w.ch.unary_unary(h.WS + "Heartbeat")(worker_pb2.HeartbeatRequest(
                worker_id="w1", session_id=w.session,
                lease_ids=["lease-bogus"]).SerializeToString()))
        self.assertEqual(list(resp.cancelled_lease_ids), ["lease-bogus"])
        self.expect_rpc_error(
            lambda: w.ch.unary_unary(h.WS + "Heartbeat")(
                worker_pb2.HeartbeatRequest(
                    worker_id="x", session_id="nope").SerializeToString()),
            grpc.StatusCode.NOT_FOUND)
        self.assertEqual(w.hb_interval, 200)


class FairnessTest(SchedTestBase):
    def test_small_build_not_starved(self):
        w = self.worker(mode="manual", slots=1)
        a_digests = [self.client.make_action()[0] for _ in range(30)]
        b_digest, _ = self.client.make_action()
        calls = [self.client.execute_call(d, invocation="build-A")
                 for d in a_digests]
        self.wait_for(lambda: self.sched.metric(
            "distbuild_scheduler_queue_depth") == 29, what="A queued")
        calls.append(self.client.execute_call(b_digest, invocation="build-B"))
        self.wait_for(lambda: self.sched.metric(
            "distbuild_scheduler_queue_depth") == 30, what="B queued")
        order = []
        pool = concurrent.futures.ThreadPoolExecutor(32)
        futs = [pool.submit(lambda c=c: list(c)) for c in calls]
        for _ in range(31):
            a = w.next_assignment()
            order.append(a.action_digest.hash)
            w.complete(a)
        for f in futs:
            f.result(20)
        pool.shutdown()
        pos = order.index(b_digest.hash)
        self.assertLess(pos, 3, "B dispatched at position %d" % pos)


class HttpTest(SchedTestBase):
    def test_healthz_and_metrics(self):
        st, body = self.sched.http("/healthz")
        self.assertEqual((st, body.strip()), (200, "ok"))
        self.worker(slots=3)
        d, _ = self.client.make_action()
        self.client.execute(d)
        self.client.execute(d)
        _, m = self.sched.http("/metrics")
        for line in (
                'distbuild_scheduler_actions_total{outcome="cache_hit"} 1',
                'distbuild_scheduler_actions_total{outcome="executed"} 1',
                'distbuild_scheduler_actions_total{outcome="failed"} 0',
                'distbuild_scheduler_actions_total{outcome="requeued"} 0',
                "distbuild_scheduler_queue_depth 0",
                "distbuild_scheduler_workers 1",
                "distbuild_scheduler_worker_slots 3",
                "distbuild_scheduler_busy_slots 0",
                "distbuild_scheduler_action_cache_hit_ratio 0.5"):
            self.assertIn(line, m)
        self.assertIn("# TYPE distbuild_scheduler_actions_total counter", m)
        # The action, its command and the result are in the embedded CAS,
        # and the background syncer (the default --sync) made them durable.
        self.assertGreaterEqual(self.sched.metric("distbuild_cas_blobs"), 2)
        self.wait_for(
            lambda: self.sched.metric("distbuild_cas_syncs_total") >= 1,
            what="a background sync round")
        self.assertEqual(
            self.sched.metric("distbuild_cas_sync_failures_total"), 0)


class DiskFullTest(SchedTestBase):
    """The embedded CAS on a 1 MiB tmpfs: storing an inline early output
    fails with a full disk."""

    def before_start(self):
        cas = os.path.join(self.sched.dir, "cas")
        os.mkdir(cas)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs",
                            cas], capture_output=True)
        if r.returncode != 0:
            shutil.rmtree(self.sched.dir, ignore_errors=True)
            self.skipTest("cannot mount a small tmpfs here: " +
                          r.stderr.decode())
        self.addCleanup(subprocess.run, ["umount", "-l", cas])
        self.cas = cas

    def test_inline_early_output_disk_full(self):
        w = self.worker(mode="manual")
        call, a = self.dispatch(w, outputs=("lib.d", "lib.rmeta"))
        it = iter(call)
        big = os.urandom(3 << 19)  # 1.5 MiB that will not compress
        dep = b"lib.rmeta: src/lib.rs\n"
        files = {"lib.rmeta": big, "lib.d": dep}
        err = self.expect_rpc_error(
            lambda: w.progress(a, files, b"", inline=files),
            grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("cannot store an inline early output", err.details())
        # Nothing partial is visible, and no temp file is left behind.
        missing = self.client.unary(
            h.CAS + "FindMissingBlobs",
            re_pb2.FindMissingBlobsRequest(blob_digests=[h.pbd(big)]),
            re_pb2.FindMissingBlobsResponse)
        self.assertEqual(list(missing.missing_blob_digests), [h.pbd(big)])
        self.assertEqual(os.listdir(os.path.join(self.cas, "tmp")), [])
        # The store still takes what fits, and the action still completes;
        # the refused early outputs were never relayed.
        small = {"lib.rmeta": b"small rmeta", "lib.d": dep}
        w.progress(a, small, b"", inline=small)
        w.complete(a)
        ops = [h.operations_pb2.Operation.FromString(m) for m in it]
        self.assertTrue(ops[-1].done)
        self.assertEqual(h.response_of(ops[-1]).status.code, 0)
        relayed = [h.early_of(o) for o in ops if h.early_of(o) is not None]
        self.assertEqual(len(relayed), 1)
        self.assertEqual(sorted(f.contents for f in relayed[0].files),
                         sorted(small.values()))


class OrphanTest(SchedTestBase):
    """An action whose clients have all gone is cancelled after the
    orphan timeout: dropped from the queue, or killed on its worker."""
    extra = ("--heartbeat-ms", "200", "--queue-timeout", "30",
             "--orphan-timeout", "0.5")

    def first_op(self, call):
        return h.operations_pb2.Operation.FromString(next(call))

    def test_running_orphan_is_cancelled_and_not_cached(self):
        w = self.worker(mode="manual")
        d, a, name = self.abandon(w)
        t0 = time.time()
        self.wait_for(lambda: a.lease_id in w.cancels, what="cancel_lease_id")
        self.assertGreaterEqual(time.time() - t0, 0.4)
        self.assertEqual(self.sched.metric(
            'distbuild_scheduler_actions_total{outcome="cancelled"}'), 1)
        self.assertEqual(self.sched.metric("distbuild_scheduler_running"), 0)
        self.assertEqual(self.sched.metric("distbuild_scheduler_busy_slots"),
                         0)
        self.assertIn("job cancelled: %s (killed on worker w1)" % name,
                      self.sched.output())
        # A result that still arrives is ignored, not cached.
        w.complete(a)
        self.expect_rpc_error(lambda: self.client.unary(
            h.AC + "GetActionResult",
            re_pb2.GetActionResultRequest(action_digest=d),
            re_pb2.ActionResult), grpc.StatusCode.NOT_FOUND)
        # The operation stays resolvable, as cancelled.
        ops = [h.operations_pb2.Operation.FromString(m)
               for m in self.client.wait_call(name)]
        self.assertTrue(ops[-1].done)
        self.assertEqual(h.response_of(ops[-1]).status.code, 1)  # CANCELLED
        # Submitting again starts afresh on the freed slot.
        call2 = self.client.execute_call(d)
        a2 = w.next_assignment()
        self.assertNotEqual(a2.lease_id, a.lease_id)
        self.assertEqual(a2.attempt, 1)
        w.complete(a2)
        ops = [h.operations_pb2.Operation.FromString(m) for m in call2]
        self.assertNotEqual(ops[-1].name, name)
        self.assertEqual(h.response_of(ops[-1]).status.code, 0)

    def test_queued_orphan_is_dropped(self):
        w = self.worker(mode="manual", slots=1)
        call1, a1 = self.dispatch(w)
        d2, _ = self.client.make_action(argv=("rustc", "--crate-name", "y"))
        call2 = self.client.execute_call(d2)
        self.assertEqual(h.stage_of(self.first_op(call2)), STAGE.QUEUED)
        self.assertEqual(self.sched.metric("distbuild_scheduler_queue_depth"),
                         1)
        call2.cancel()
        self.wait_for(lambda: self.sched.metric(
            'distbuild_scheduler_actions_total{outcome="cancelled"}') == 1,
            what="the queued orphan's cancellation")
        self.assertEqual(self.sched.metric("distbuild_scheduler_queue_depth"),
                         0)
        self.assertIn("(dropped from the queue)", self.sched.output())
        # The watched action is untouched, and the slot it frees gets
        # nothing: the dropped action is not dispatched.
        w.complete(a1)
        ops = [h.operations_pb2.Operation.FromString(m) for m in call1]
        self.assertEqual(h.response_of(ops[-1]).status.code, 0)
        with self.assertRaises(h.queue.Empty):
            w.next_assignment(timeout=0.8)
        self.assertEqual(w.cancels, [])

    def test_reattached_client_keeps_the_action(self):
        w = self.worker(mode="manual")
        d, a, name = self.abandon(w)
        wait = self.client.wait_call(name)
        self.assertEqual(h.operations_pb2.Operation.FromString(
            next(wait)).name, name)
        time.sleep(1.2)  # more than twice the orphan timeout
        self.assertEqual(w.cancels, [])
        w.complete(a)
        ops = [h.operations_pb2.Operation.FromString(m) for m in wait]
        self.assertEqual(h.response_of(ops[-1]).status.code, 0)
        self.assertEqual(self.sched.metric(
            'distbuild_scheduler_actions_total{outcome="cancelled"}'), 0)

    def test_resubmitted_action_joins_the_orphan(self):
        w = self.worker(mode="manual")
        d, a, name = self.abandon(w)
        time.sleep(0.2)
        call2 = self.client.execute_call(d)  # the next build, same action
        self.assertEqual(self.first_op(call2).name, name)
        time.sleep(1.2)
        self.assertEqual(w.cancels, [])
        w.complete(a)
        ops = [h.operations_pb2.Operation.FromString(m) for m in call2]
        self.assertEqual(h.response_of(ops[-1]).status.code, 0)
        self.assertEqual(len(w.assignments), 1)
        self.assertEqual(self.sched.metric(
            'distbuild_scheduler_actions_total{outcome="merged"}'), 1)


class OrphanOffTest(SchedTestBase):
    """--orphan-timeout off: an abandoned action runs to the end and its
    result is cached for the next build."""
    extra = ("--heartbeat-ms", "200", "--orphan-timeout", "off")

    def test_abandoned_action_completes_and_is_cached(self):
        w = self.worker(mode="manual")
        d, a, _ = self.abandon(w)
        time.sleep(1.0)
        self.assertEqual(w.cancels, [])
        w.complete(a)
        ar = self.client.unary(
            h.AC + "GetActionResult",
            re_pb2.GetActionResultRequest(action_digest=d),
            re_pb2.ActionResult)
        self.assertEqual(ar.execution_metadata.worker, "w1")
        self.assertIn("orphan timeout off", self.sched.output())


if __name__ == "__main__":
    BINARY = sys.argv.pop(1)
    unittest.main(verbosity=2)
