#!/usr/bin/env python3
"""Submitter hook for the prewarm service: tells it about a job, never holds the job up.

Standard library only, Python 3.7+: it runs in interpreters a farm admin does not
control (Deadline's embedded Python, an artist's workstation, a farm's submit host),
where installing prewarm and its dependencies is not an option. It POSTs to the
service's `/api/v1/jobs` with urllib; the service does all the parsing and checking.

Whatever happens (service down, slow, refusing the job, bad hook input) the hook
logs one line and exits 0 within `--give-up` seconds (default 2): a warm is a bonus,
the submission must go on.

    prewarm_hook.py --server URL deadline-cloud      a Deadline Cloud submission hook (payload on stdin)
    prewarm_hook.py manifest FILE|- --server URL     a prewarm manifest
    prewarm_hook.py job --name N --frames 1-100x2 --input PATH... --server URL
    prewarm_hook.py opencue SPEC.xml --input PATH... --server URL    an OpenCue job spec

The server and token may also come from $PREWARM_SERVER and $PREWARM_SERVICE_TOKEN.
"""

import argparse
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

log = logging.getLogger("prewarm-hook")

GIVE_UP_S = 1.5
"""How long the request may take: with the interpreter's start and exit, the whole hook
stays under the 2 s a submission may be held up (2.0 here measured 2.09 s end to end)."""

BUNDLE_FILES = ("template", "parameter_values")
"""The bundle files sent with a hook payload; its asset references come from the payload (the final ones).
(A copy of prewarm's list: this script cannot import prewarm.)"""
BUNDLE_EXTS = (".yaml", ".yml", ".json")
MAX_FILE = 4 << 20
MAX_PAYLOAD = 8 << 20
"""The service's body limit: a larger hook payload is not sent."""
HOOK_KEYS = ("jobName", "parameters", "assetReferences", "attachments")
"""What the service reads of the Deadline Cloud client's payload (its other keys stay here)."""


def post_json(server, path, body, token=None, give_up_s=GIVE_UP_S, goes_on="submission goes on without a warm"):
    """POST `body` to `server` + /api/v1 + `path`; the answer as a dict, or None (logged, saying
    that `goes_on`) on any failure or after `give_up_s`.

    The request runs in a daemon thread joined with a deadline: socket timeouts alone
    bound each read, not a server that trickles its answer.
    """
    url = server.rstrip("/") + "/api/v1" + path
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    outcome = {}

    def call():
        try:
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=give_up_s) as resp:
                outcome["answer"] = json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            outcome["error"] = "HTTP %s: %s" % (exc.code, _error_text(exc))
        except Exception as exc:  # the hook must survive anything the network does
            outcome["error"] = "%s: %s" % (type(exc).__name__, exc)
            # the socket's own timeout can fire just before the join's deadline (a loaded node): the same give-up
            outcome["timed_out"] = isinstance(exc, socket.timeout) or isinstance(getattr(exc, "reason", None),
                                                                                 socket.timeout)

    worker = threading.Thread(target=call, name="prewarm-hook", daemon=True)
    worker.start()
    worker.join(give_up_s)
    if worker.is_alive() or outcome.get("timed_out"):
        log.warning("prewarm: %s did not answer within %.1fs; %s", url, give_up_s, goes_on)
        return None
    if "error" in outcome:
        log.warning("prewarm: %s: %s; %s", url, outcome["error"], goes_on)
        return None
    return outcome["answer"]


def post(server, body, token=None, give_up_s=GIVE_UP_S):
    """Submit `body` as a job; the service's answer, logged with the queues no worker consumes."""
    t0 = time.monotonic()
    answer = post_json(server, "/jobs", body, token, give_up_s)
    if answer is None:
        return None
    log.info("prewarm: %s %s (%s) in %.2fs", "reused" if answer.get("duplicate") else "warming",
             answer.get("job"), ",".join(answer.get("ids", [])), time.monotonic() - t0)
    for queue in answer.get("unserved") or ():
        log.warning("prewarm: no worker consumes %s: the warm waits there until one starts", queue)
    return answer


def _error_text(exc):
    try:
        data = json.loads(exc.read().decode())
        return "%s: %s" % (data.get("where", ""), data.get("error", data))
    except Exception:
        return exc.reason


# job descriptions


def deadline_cloud_body(hook_input):
    """A Deadline Cloud submission hook's payload -> the service's `hook` request.

    The client runs the hook (`preSubmission` or `postSubmission` in `hooks.yaml`) with its
    payload on stdin: `jobName`, `jobBundleDir`, `parameters` and `assetReferences` with
    flat keys (`inputFilenames`, `inputDirectories`, `outputDirectories`, `referencedPaths`).
    The bundle folder is on this workstation, so its template (and its own parameter
    values) travel with the payload; the payload's parameters and references win.
    """
    if not isinstance(hook_input, dict):
        raise ValueError("the hook payload is not a JSON object")
    bundle_dir = hook_input.get("jobBundleDir")
    if not isinstance(bundle_dir, str) or not os.path.isdir(bundle_dir):
        raise ValueError("jobBundleDir %r is not a folder" % (bundle_dir,))
    files = {}
    for name in sorted(os.listdir(bundle_dir)):
        stem, ext = os.path.splitext(name)
        path = os.path.join(bundle_dir, name)
        if stem in BUNDLE_FILES and ext in BUNDLE_EXTS and os.path.isfile(path) and os.path.getsize(path) <= MAX_FILE:
            with open(path, encoding="utf-8") as fh:
                files[name] = fh.read()
    if not any(os.path.splitext(n)[0] == "template" for n in files):
        raise ValueError("no template.yaml or template.json in %s" % bundle_dir)
    payload = {k: hook_input[k] for k in HOOK_KEYS if k in hook_input}
    payload.setdefault("jobName", os.environ.get("DEADLINE_JOB_NAME") or None)
    return {"hook": {k: v for k, v in payload.items() if v is not None}, "bundle": files}


def job_body(name, frames, inputs, extra=None):
    """A manifest from plain facts; JSON is YAML, so the service reads it as a manifest."""
    manifest = {"job": name, "frames": frames, "inputs": list(inputs)}
    manifest.update(extra or {})
    return {"manifest": json.dumps(manifest)}


def opencue_body(spec_xml, inputs):
    """An OpenCue job spec (`spec > job > layers > layer`) -> a manifest: the frames of all layers.

    OpenCue specs name no input files: they come from `--input`.
    """
    root = ET.fromstring(spec_xml)
    job = root.find("job")
    if job is None:
        raise ValueError("no <job> element in the spec")
    ranges = [r.text.strip() for r in job.iter("range") if r.text and r.text.strip()]
    if not ranges:
        raise ValueError("no layer <range> in the spec")
    return job_body(job.get("name") or "opencue-job", ",".join(dict.fromkeys(ranges)), inputs)


# command line


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # a misconfigured hook still must not fail the submission
        if exc.code:
            log.warning("prewarm hook: bad arguments; submission goes on without a warm")
        return 0
    if args.log:
        logging.getLogger().addHandler(logging.FileHandler(args.log))
    if not args.server:
        log.warning("prewarm hook: no --server or $PREWARM_SERVER; submission goes on without a warm")
        return 0
    try:
        body = _body(args)
    except Exception as exc:  # bad hook input: log it, never fail the submission
        log.warning("prewarm hook: cannot describe the job (%s: %s); submission goes on", type(exc).__name__, exc)
        return 0
    if args.traces:
        body["traces"] = args.traces
    answer = post(args.server, body, args.token, args.give_up)
    if answer is not None and args.print_ids:
        print("\n".join(answer.get("ids", [])))
    return 0


def _body(args):
    if args.kind == "deadline-cloud":
        text = sys.stdin.read(MAX_PAYLOAD + 1)
        if len(text) > MAX_PAYLOAD:
            raise ValueError("the hook payload is larger than %d MiB" % (MAX_PAYLOAD >> 20))
        return deadline_cloud_body(json.loads(text))
    if args.kind == "manifest":
        if args.file == "-":
            return {"manifest": sys.stdin.read()}
        with open(args.file, encoding="utf-8") as fh:
            return {"manifest": fh.read()}
    if args.kind == "opencue":
        with open(args.spec, encoding="utf-8") as fh:
            return opencue_body(fh.read(), args.input)
    return job_body(args.name, args.frames, args.input)


def _parser():
    p = argparse.ArgumentParser(prog="prewarm_hook.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default=os.environ.get("PREWARM_SERVER"), help="service URL ($PREWARM_SERVER)")
    p.add_argument("--token", default=os.environ.get("PREWARM_SERVICE_TOKEN"), help="bearer token")
    p.add_argument("--give-up", type=float, default=GIVE_UP_S, help="seconds before giving up (default 2)")
    p.add_argument("--traces", action="append", help="trace paths under the service's roots; repeatable")
    p.add_argument("--log", help="also append log lines to this file")
    p.add_argument("--print-ids", action="store_true", help="print the warm ids on stdout")
    sub = p.add_subparsers(dest="kind", required=True)
    sub.add_parser("deadline-cloud", help="a Deadline Cloud submission hook: the client's payload on stdin; "
                                          "prints nothing on stdout, so the submission is left unchanged")
    m = sub.add_parser("manifest", help="a prewarm manifest file (- for stdin)")
    m.add_argument("file")
    j = sub.add_parser("job", help="a job from its name, frames and inputs (any farm)")
    j.add_argument("--name", required=True)
    j.add_argument("--frames", required=True, help="frame spec, e.g. 1-100x2")
    j.add_argument("--input", action="append", required=True, help="input path or pattern; repeatable")
    o = sub.add_parser("opencue", help="an OpenCue job spec XML, inputs from --input")
    o.add_argument("spec")
    o.add_argument("--input", action="append", required=True, help="input path or pattern; repeatable")
    return p


if __name__ == "__main__":
    sys.exit(main())
