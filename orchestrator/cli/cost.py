"""`strato cost NAME`: hourly cost per node and in total; `--crossover`: when an endpoint beats Lambda."""

import click

from orchestrator import cost, service
from orchestrator.cli.common import emit_json, handle_errors, json_option, state_option
from orchestrator.errors import UsageError


@click.command("cost")
@click.argument("name", required=False)
@click.option("--crossover", is_flag=True, help="Print the requests/month at which a SageMaker endpoint "
                                                "becomes cheaper than Lambda, instead of an infrastructure's cost.")
@click.option("--instance-type", default="ml.m5.large", show_default=True, help="Endpoint instance type (--crossover).")
@click.option("--instance-count", default=1, show_default=True, type=int, help="Endpoint instances (--crossover).")
@click.option("--region", default=None, help="Price region (default $AWS_REGION, else us-east-1).")
@state_option
@json_option
@handle_errors
def command(name, crossover, instance_type, instance_count, region, state_path, as_json):
    """Show what infrastructure NAME costs per hour (per node and in total), from the price tables."""
    if crossover:
        if cost.endpoint_monthly(instance_type, instance_count, region) is None:
            raise service.UserError(f"no SageMaker price for {instance_type} in {region or 'the default region'} "
                                    f"(see {cost.PRICE_DIR}/aws.yaml or {cost.user_price_file()})")
        rows = cost.crossover_table(instance_type=instance_type, instance_count=instance_count, region=region)
        if as_json:
            emit_json({"crossover": rows})
            return
        click.echo(f"{'latency ms':>10} {'memory MB':>9} {'endpoint $/mo':>13} {'crossover req/mo':>16} {'req/s':>8}")
        for r in rows:
            click.echo(f"{r['duration_ms']:>10} {r['memory_mb']:>9} {r['endpoint_usd_month']:>13.2f} "
                       f"{r['crossover_requests_per_month']:>16,} {r['crossover_requests_per_second']:>8}")
        return
    if not name:
        raise UsageError("name an infrastructure (strato cost NAME) or use --crossover")
    data = service.infrastructure_cost(service.open_store(state_path), name)
    if as_json:
        emit_json(data)
        return
    for row in data["nodes"]:
        extra = f"  ({row['unpriced']} without a known price)" if row["unpriced"] else ""
        extra += "  + per use" if row["pay_per_use"] else ""
        click.echo(f"{row['node']:<24} {row['instances']:>3} x {'/'.join(row['drivers']):<12} "
                   f"${row['usd_per_hour']:>9.4f}/h{extra}")
    click.echo(f"{'total':<24} {'':>19} ${data['usd_per_hour']:>9.4f}/h  (${data['usd_per_month']:,.2f}/month)")
    click.echo(f"prices: {data['prices']['source']}, {data['prices']['retrieved']}"
               + (f"; overrides from {data['prices']['user_file']}" if data["prices"]["user_file"] else ""))
    for note in data["notes"]:
        click.echo(f"note: {note}")
