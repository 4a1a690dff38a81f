"""boto3, as a user of `spotplan render` would use it, against the moto server the Rust tests
start (AWS_ENDPOINT_URL and dummy credentials come from the environment).

    setup                 create launch template "web" from one of moto's AMIs; print its id
                          and the default subnets of us-east-1a, b and c
    send FORMAT           read a rendered body on stdin, send it unchanged (CreateFleet,
                          RequestSpotFleet, CreateAutoScalingGroup), print what AWS stores
    show FORMAT NAME      print what AWS stores for the fleet or group named NAME
    foreign-asg NAME      create an Auto Scaling group without spotplan's tags

boto3 validates every parameter name and type against the API model before sending, so a body
with a name the API does not have fails here, not silently.
"""

import json
import sys

import boto3

REGION = "us-east-1"
NAME_TAG = "spotplan.dev/name"


def ec2():
    return boto3.client("ec2", region_name=REGION)


def asg():
    return boto3.client("autoscaling", region_name=REGION)


def setup():
    client = ec2()
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    lt = client.create_launch_template(
        LaunchTemplateName="web", LaunchTemplateData={"ImageId": image}
    )["LaunchTemplate"]
    subnets = sorted(
        (s["AvailabilityZone"], s["SubnetId"])
        for s in client.describe_subnets()["Subnets"]
        if s["DefaultForAz"] and s["AvailabilityZone"] in ("us-east-1a", "us-east-1b", "us-east-1c")
    )
    print(json.dumps({"launch_template_id": lt["LaunchTemplateId"], "subnets": [s for _, s in subnets]}))


def tagged(tags, name):
    return any(t.get("Key") == NAME_TAG and t.get("Value") == name for t in tags or [])


def show(fmt, name):
    if fmt == "ec2-fleet":
        fleets = [
            f
            for f in ec2().describe_fleets()["Fleets"]
            if tagged(f.get("Tags"), name) and not f["FleetState"].startswith("deleted")
        ]
        for f in fleets:
            f["Instances"] = ec2().describe_fleet_instances(FleetId=f["FleetId"])["ActiveInstances"]
        return fleets
    if fmt == "spot-fleet":
        return [
            r
            for r in ec2().describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
            if tagged(r.get("Tags"), name) and r["SpotFleetRequestState"] in ("submitted", "active", "modifying")
        ]
    groups = asg().describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return groups


def send(fmt):
    body = json.load(sys.stdin)
    if fmt == "ec2-fleet":
        ec2().create_fleet(**body)
        name = next(t["Value"] for t in body["TagSpecifications"][0]["Tags"] if t["Key"] == NAME_TAG)
    elif fmt == "spot-fleet":
        ec2().request_spot_fleet(**body)
        tags = body["SpotFleetRequestConfig"]["TagSpecifications"][0]["Tags"]
        name = next(t["Value"] for t in tags if t["Key"] == NAME_TAG)
    else:
        asg().create_auto_scaling_group(**body)
        name = body["AutoScalingGroupName"]
    return show(fmt, name)


def foreign_asg(name):
    subnet = ec2().describe_subnets()["Subnets"][0]["SubnetId"]
    asg().create_auto_scaling_group(
        AutoScalingGroupName=name,
        MinSize=1,
        MaxSize=2,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateName": "web", "Version": "$Latest"},
    )
    return show("asg", name)


def main():
    cmd = sys.argv[1]
    if cmd == "setup":
        setup()
        return
    if cmd == "send":
        out = send(sys.argv[2])
    elif cmd == "show":
        out = show(sys.argv[2], sys.argv[3])
    elif cmd == "foreign-asg":
        out = foreign_asg(sys.argv[2])
    else:
        sys.exit(f"unknown command {cmd}")
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
