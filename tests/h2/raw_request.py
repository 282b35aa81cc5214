"""Sends HTTP/2 requests exactly as given, malformed ones included, with the `h2` library's own checks of
outbound headers turned off, each on a connection of its own (h2c, prior knowledge), and prints what
came back for each as one JSON line: the status and body, or the stream's reset code, or the GOAWAY's.

usage: raw_request.py PORT CASES_JSON, where CASES_JSON is a list of header lists ([[name, value], ...]).
"""
import json
import socket
import sys

import h2.config
import h2.connection
import h2.events


def send(port, headers):
    config = h2.config.H2Configuration(
        client_side=True,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        split_outbound_cookies=False,
        validate_inbound_headers=True,
    )
    conn = h2.connection.H2Connection(config=config)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    stream = conn.get_next_available_stream_id()
    conn.send_headers(stream, [(n.encode(), v.encode()) for n, v in headers], end_stream=True)
    sock.sendall(conn.data_to_send())
    got = {"status": None, "body": "", "reset": None, "goaway": None}
    body = b""
    ended = False
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    got["status"] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    got["reset"] = str(event.error_code)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    got["goaway"] = str(event.error_code)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            sock.sendall(conn.data_to_send())
            if ended or got["reset"] or got["goaway"]:
                break
    except (socket.timeout, ConnectionError):
        pass
    finally:
        sock.close()
    got["body"] = body.decode("utf-8", "replace")
    return got


def main():
    port, cases = int(sys.argv[1]), json.loads(sys.argv[2])
    for headers in cases:
        print(json.dumps(send(port, headers)), flush=True)


main()
