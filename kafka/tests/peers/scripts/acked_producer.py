"""Produces an increasing sequence with acks=all and idempotence until killed or done, writing one
`partition offset value` line per acknowledged record to the output file (line-buffered), so that a
crash test knows exactly which records the broker acknowledged.

usage: acked_producer.py BOOTSTRAP TOPIC OUTFILE MAX_MESSAGES
"""

import sys

from confluent_kafka import Producer


def main() -> int:
    bootstrap, topic, outfile, max_messages = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    out = open(outfile, "w", buffering=1)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 2, "message.timeout.ms": 600000, "reconnect.backoff.max.ms": 500})

    def cb(err, msg):
        if err is None:
            out.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")

    for i in range(max_messages):
        while True:
            try:
                p.produce(topic, key=str(i % 64).encode(), value=str(i).encode(), on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    p.flush(600)
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
