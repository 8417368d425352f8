"""Runs named interop scenarios against a deltamesh node and prints one JSON
object: scenario name -> what the client observed. The vitest side asserts.

    /usr/bin/python3 scenario.py --target 127.0.0.1:50051 --token "$JWT" \
        --masked-token "$SALES_MOBILE_JWT" records changes introspection

Each scenario is called with the client and the parsed arguments.
"""

import argparse
import json
import sys

from deltamesh_client import Client
import scenario_changes
import scenario_introspection
import scenario_records

SCENARIOS = {
    "records": scenario_records.run,
    "changes": scenario_changes.run,
    "introspection": scenario_introspection.run,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="host:port of the node's native gRPC listener")
    parser.add_argument("--token", default="", help="bearer token (JWT) the node verifies")
    parser.add_argument(
        "--masked-token", default="", help="bearer token of a principal in the same tenant who sees phones masked (changes)"
    )
    parser.add_argument("--tenant", default="", help="tenant (dev auth header)")
    parser.add_argument("--subject", default="python-interop", help="caller subject (dev auth header)")
    parser.add_argument("--prefix", default="py", help="prefix of the keys this run writes")
    parser.add_argument("scenarios", nargs="+", choices=sorted(SCENARIOS))
    args = parser.parse_args()

    client = Client(args.target, token=args.token, tenant=args.tenant, subject=args.subject)
    try:
        results = {name: SCENARIOS[name](client, args) for name in args.scenarios}
    finally:
        client.close()
    json.dump(results, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
