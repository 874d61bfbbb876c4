"""The Locust user of the overload test and benchmark: POST /orders as fast as the service answers.

Locust runs this file in its own process (``python -m locust -f ...``, see
:func:`tests.support.overload.run_locust`): Locust monkey-patches the standard library with gevent on
import, so neither a test nor the bench ever imports this module. Every answer is recorded (start
time, latency, status, ``Retry-After``, the 202's body) and written as JSON lines to
``$KSTREAM_LOCUST_OUT`` when Locust quits; the caller compares the 202s with what reached Kafka and
the sink. Users never retry (``max_retries`` 0), so each record is one request the service answered
or one connection error.
"""

from __future__ import annotations

import itertools
import json
import os
import time

from locust import FastHttpUser, constant, events, task

ANSWERS: list[dict] = []
_NUMBERS = itertools.count()


class OrderUser(FastHttpUser):
    wait_time = constant(0)  # closed loop, no think time: each user posts again as soon as it is answered
    network_timeout = 60.0  # far past the service's own bound (its delivery timeout + slack)
    connection_timeout = 10.0
    max_retries = 0

    @task
    def post_order(self) -> None:
        n = next(_NUMBERS)
        body = {"customer_id": f"C{n % 5000:07d}", "total_cents": 100 + n % 9_900, "item_count": 1}
        started = time.time()
        clock = time.perf_counter()
        with self.client.post("/orders", json=body, catch_response=True) as resp:
            answer = {
                "start": started,
                "latency_s": time.perf_counter() - clock,
                "status": resp.status_code,
                "retry_after": resp.headers.get("Retry-After") if resp.headers else None,
                "customer_id": body["customer_id"],
                "total_cents": body["total_cents"],
            }
            if resp.status_code == 202:
                answer["accepted"] = resp.json()
            elif resp.status_code == 503:
                answer["detail"] = resp.text[:300]
                resp.success()  # an answer the test expects: back-pressure, not a failure of the run
            else:
                answer["error"] = str(resp.error or resp.text)[:300]
            ANSWERS.append(answer)


@events.quitting.add_listener
def _write_answers(environment, **_kwargs) -> None:
    path = os.environ["KSTREAM_LOCUST_OUT"]
    with open(path, "w") as out:
        for answer in ANSWERS:
            out.write(json.dumps(answer) + "\n")
