// fleet-harness: what Karpenter's AWS provider asks EC2 for, given spotplan's NodePool and
// NodeOverlays, computed by Karpenter's own code and sent to an AWS-protocol server (moto).
//
// Every step that decides the request is the pinned modules' code:
//   - sigs.k8s.io/karpenter's NodeOverlay controller validates the overlays against the NodePool
//     and fills its instance-type store; the store applies them to the types' offerings;
//   - its NodeClaim template orders the types by adjusted price and sets
//     karpenter.sh/price-overlay-applied;
//   - karpenter-provider-aws's instance provider turns that NodeClaim into a CreateFleet request
//     (allocation strategy, one override per type and zone with its Priority) and sends it.
//
// Stubbed, because they are not part of the request's choice: the launch template provider
// (AMI and user data resolution; here one launch template made in moto), capacity reservations,
// placement groups and zonal shifts (none). Subnets are made in moto and given in the
// EC2NodeClass's status, as Karpenter's subnet controller would.
//
//	fleet-harness INPUT.json   (see input below; prints a JSON summary on stdout)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/patrickmn/go-cache"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	awsv1 "github.com/aws/karpenter-provider-aws/pkg/apis/v1"
	awscache "github.com/aws/karpenter-provider-aws/pkg/cache"
	"github.com/aws/karpenter-provider-aws/pkg/providers/capacityreservation"
	"github.com/aws/karpenter-provider-aws/pkg/providers/instance"
	"github.com/aws/karpenter-provider-aws/pkg/providers/launchtemplate"
	"github.com/aws/karpenter-provider-aws/pkg/providers/placementgroup"
	"github.com/aws/karpenter-provider-aws/pkg/providers/subnet"
	awsoptions "github.com/aws/karpenter-provider-aws/pkg/operator/options"
	karpv1 "sigs.k8s.io/karpenter/pkg/apis/v1"
	"sigs.k8s.io/karpenter/pkg/apis/v1alpha1"
	"sigs.k8s.io/karpenter/pkg/cloudprovider"
	"sigs.k8s.io/karpenter/pkg/controllers/nodeoverlay"
	provisioning "sigs.k8s.io/karpenter/pkg/controllers/provisioning/scheduling"
	"sigs.k8s.io/karpenter/pkg/controllers/state"
	"sigs.k8s.io/karpenter/pkg/events"
	coreoptions "sigs.k8s.io/karpenter/pkg/operator/options"
	"sigs.k8s.io/karpenter/pkg/scheduling"
)

type offering struct {
	Zone  string  `json:"zone"`
	Price float64 `json:"price"`
}

type instanceType struct {
	Name      string     `json:"name"`
	Arch      string     `json:"arch"`
	VCPUs     int64      `json:"vcpus"`
	MemoryMiB int64      `json:"memoryMiB"`
	Offerings []offering `json:"offerings"`
}

type input struct {
	Endpoint      string            `json:"endpoint"`
	Region        string            `json:"region"`
	NodePool      json.RawMessage   `json:"nodePool"`
	Overlays      []json.RawMessage `json:"overlays"`
	InstanceTypes []instanceType    `json:"instanceTypes"`
}

type output struct {
	// Karpenter's verdict on each overlay: "True" or "False: reason".
	Overlays map[string]string `json:"overlays"`
	// The NodeClaim's instance types, in the order Karpenter's template put them.
	NodeClaimTypes []string `json:"nodeClaimTypes"`
	Annotated      bool     `json:"priceOverlayApplied"`
	// What CreateFleet launched.
	InstanceID   string `json:"instanceId"`
	InstanceType string `json:"instanceType"`
	Zone         string `json:"zone"`
}

// cloudProvider answers only what the overlay controller asks: a NodePool's instance types.
type cloudProvider struct {
	cloudprovider.CloudProvider
	types []*cloudprovider.InstanceType
}

func (c cloudProvider) GetInstanceTypes(context.Context, *karpv1.NodePool) ([]*cloudprovider.InstanceType, error) {
	return c.types, nil
}

// launchTemplates stands in for AMI and user-data resolution: one launch template, made in moto.
type launchTemplates struct {
	launchtemplate.Provider
	name, image string
}

func (l launchTemplates) EnsureAll(_ context.Context, _ *awsv1.EC2NodeClass, _ *karpv1.NodeClaim, its []*cloudprovider.InstanceType, _ string, _ map[string]string, _ string) ([]*launchtemplate.LaunchTemplate, error) {
	return []*launchtemplate.LaunchTemplate{{Name: l.name, InstanceTypes: its, ImageID: l.image}}, nil
}

type noReservations struct{ capacityreservation.Provider }

func (noReservations) MarkLaunched(string) {}

type noPlacementGroup struct{}

func (noPlacementGroup) Get(context.Context, placementgroup.NodeClass) (*placementgroup.PlacementGroup, error) {
	return nil, nil
}

type noZonalShift struct{}

func (noZonalShift) IsZonalShifted(context.Context, string) bool { return false }
func (noZonalShift) UpdateZonalShifts(context.Context) error    { return nil }
func (noZonalShift) ShiftedZones() sets.Set[string]             { return sets.New[string]() }

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet-harness:", err)
		os.Exit(1)
	}
	return v
}

func types(in []instanceType) []*cloudprovider.InstanceType {
	var out []*cloudprovider.InstanceType
	for _, t := range in {
		zones := []string{}
		var offerings cloudprovider.Offerings
		for _, o := range t.Offerings {
			zones = append(zones, o.Zone)
			offerings = append(offerings, &cloudprovider.Offering{
				Requirements: scheduling.NewRequirements(
					scheduling.NewRequirement(karpv1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, karpv1.CapacityTypeSpot),
					scheduling.NewRequirement(corev1.LabelTopologyZone, corev1.NodeSelectorOpIn, o.Zone),
				),
				Price:     o.Price,
				Available: true,
			})
		}
		out = append(out, &cloudprovider.InstanceType{
			Name: t.Name,
			Requirements: scheduling.NewRequirements(
				scheduling.NewRequirement(corev1.LabelInstanceTypeStable, corev1.NodeSelectorOpIn, t.Name),
				scheduling.NewRequirement(corev1.LabelArchStable, corev1.NodeSelectorOpIn, t.Arch),
				scheduling.NewRequirement(corev1.LabelOSStable, corev1.NodeSelectorOpIn, "linux"),
				scheduling.NewRequirement(karpv1.CapacityTypeLabelKey, corev1.NodeSelectorOpIn, karpv1.CapacityTypeSpot),
				scheduling.NewRequirement(corev1.LabelTopologyZone, corev1.NodeSelectorOpIn, zones...),
			),
			Offerings: offerings,
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU:    *resource.NewQuantity(t.VCPUs, resource.DecimalSI),
				corev1.ResourceMemory: *resource.NewQuantity(t.MemoryMiB*1024*1024, resource.BinarySI),
				corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
			},
			Overhead: &cloudprovider.InstanceTypeOverhead{},
		})
	}
	return out
}

// overlaid runs Karpenter's NodeOverlay controller over the NodePool and overlays, and returns
// the types as its store applies them, with each overlay's ValidationSucceeded.
func overlaid(ctx context.Context, np *karpv1.NodePool, overlays []*v1alpha1.NodeOverlay, its []*cloudprovider.InstanceType) ([]*cloudprovider.InstanceType, map[string]string) {
	b := fake.NewClientBuilder().WithScheme(scheme.Scheme).WithObjects(np).WithStatusSubresource(&v1alpha1.NodeOverlay{})
	for _, o := range overlays {
		b = b.WithObjects(o)
	}
	kube := b.Build()
	cp := cloudProvider{types: its}
	store := nodeoverlay.NewInstanceTypeStore()
	clk := clock.RealClock{}
	ctrl := nodeoverlay.NewController(clk, kube, cp, store, state.NewCluster(clk, kube, cp))
	must(ctrl.Reconcile(ctx, reconcile.Request{}))
	verdicts := map[string]string{}
	for _, o := range overlays {
		got := &v1alpha1.NodeOverlay{}
		must(0, kube.Get(ctx, client.ObjectKey{Name: o.Name}, got))
		c := got.StatusConditions().Get(v1alpha1.ConditionTypeValidationSucceeded)
		switch {
		case c == nil:
			verdicts[o.Name] = "Unknown"
		case c.IsTrue():
			verdicts[o.Name] = "True"
		default:
			verdicts[o.Name] = "False: " + c.Reason
		}
	}
	return must(store.ApplyAll(np.Name, its)), verdicts
}

// withOptions puts Karpenter's and its AWS provider's options in ctx as their controllers parse
// them, with the NodeOverlay feature gate on.
func withOptions(ctx context.Context) context.Context {
	fs := &coreoptions.FlagSet{FlagSet: flag.NewFlagSet("karpenter", flag.ContinueOnError)}
	core := &coreoptions.Options{}
	core.AddFlags(fs)
	provider := &awsoptions.Options{}
	provider.AddFlags(fs)
	must(0, core.Parse(fs, "--feature-gates", "NodeOverlay=true"))
	must(0, provider.Parse(fs, "--feature-gates", "NodeOverlay=true", "--cluster-name", "harness", "--cluster-endpoint", "https://harness"))
	return provider.ToContext(core.ToContext(ctx))
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: fleet-harness INPUT.json")
		os.Exit(2)
	}
	var in input
	must(0, json.Unmarshal(must(os.ReadFile(os.Args[1])), &in))
	ctx := withOptions(context.Background())

	np := &karpv1.NodePool{}
	must(0, json.Unmarshal(in.NodePool, np))
	var overlays []*v1alpha1.NodeOverlay
	for _, raw := range in.Overlays {
		o := &v1alpha1.NodeOverlay{}
		must(0, json.Unmarshal(raw, o))
		overlays = append(overlays, o)
	}
	its, verdicts := overlaid(ctx, np, overlays, types(in.InstanceTypes))

	// The NodeClaim Karpenter's scheduler would launch for the pool.
	nct := provisioning.NewNodeClaimTemplate(np)
	nct.InstanceTypeOptions = its
	nc := nct.ToNodeClaim()
	nc.Name = np.Name + "-harness"
	nc.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	out := output{Overlays: verdicts, Annotated: nc.Annotations[v1alpha1.PriceOverlayAppliedAnnotationKey] == "true"}
	for _, r := range nc.Spec.Requirements {
		if r.Key == corev1.LabelInstanceTypeStable {
			out.NodeClaimTypes = r.Values
		}
	}

	// The AWS side: subnets and a launch template in moto, then the provider's Create.
	api := ec2.New(ec2.Options{
		Region:       in.Region,
		BaseEndpoint: aws.String(in.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
	})
	vpc := must(api.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")}))
	zones := map[string]bool{}
	for _, t := range in.InstanceTypes {
		for _, o := range t.Offerings {
			zones[o.Zone] = true
		}
	}
	nodeClass := &awsv1.EC2NodeClass{}
	n := 0
	for z := range zones {
		s := must(api.CreateSubnet(ctx, &ec2.CreateSubnetInput{
			VpcId: vpc.Vpc.VpcId, AvailabilityZone: aws.String(z),
			CidrBlock: aws.String(fmt.Sprintf("10.0.%d.0/24", n)),
		}))
		n++
		nodeClass.Status.Subnets = append(nodeClass.Status.Subnets, awsv1.Subnet{ID: *s.Subnet.SubnetId, Zone: z})
	}
	images := must(api.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"}}))
	if len(images.Images) == 0 {
		must(0, fmt.Errorf("no AMI in the AWS-protocol server"))
	}
	image := *images.Images[0].ImageId
	lt := must(api.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(fmt.Sprintf("karpenter-%s-%d", np.Name, time.Now().UnixNano())),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(image)},
	}))
	provider := instance.NewDefaultProvider(ctx, in.Region,
		events.NewRecorder(&record.FakeRecorder{}),
		api,
		awscache.NewUnavailableOfferings(),
		subnet.NewDefaultProvider(api, cache.New(time.Minute, time.Minute), cache.New(time.Minute, time.Minute)),
		launchTemplates{name: *lt.LaunchTemplate.LaunchTemplateName, image: image},
		noReservations{},
		noPlacementGroup{},
		noZonalShift{},
		cache.New(time.Minute, time.Minute),
	)
	// The tags Karpenter's cloud provider puts on every launch (a subset).
	tags := map[string]string{karpv1.NodePoolLabelKey: np.Name, "karpenter.sh/nodeclaim": nc.Name}
	launched := must(provider.Create(ctx, nodeClass, nc, tags, its))
	out.InstanceID, out.InstanceType, out.Zone = launched.ID, string(launched.Type), launched.Zone
	must(0, json.NewEncoder(os.Stdout).Encode(out))
}
