"""``python -m sandbox.kube --port N --kubeconfig PATH [--pod-network CIDR]``: run one
simulated cluster in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import logging
import pathlib
import signal

from sandbox.kube.cluster import Cluster
from sandbox.kube.config import ClusterSettings


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.kube", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="write a kubeconfig here")
    parser.add_argument("--pod-network", type=ipaddress.IPv4Network, help="CIDR for pod IPs")
    parser.add_argument("--crd-dir", type=pathlib.Path, help="install the CRDs found here")
    parser.add_argument("--no-controllers", action="store_true")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    settings = ClusterSettings()
    if args.pod_network:
        settings = dataclasses.replace(settings, pod_network=args.pod_network)
    if args.crd_dir:
        settings = dataclasses.replace(settings, crd_dir=args.crd_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Cluster(
        settings, host=args.host, port=args.port, controllers=not args.no_controllers
    ) as cluster:
        if args.kubeconfig:
            cluster.write_kubeconfig(args.kubeconfig)
        print(cluster.url, flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
