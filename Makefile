# pgha — the verbs a newcomer looks for. Run as root: the local cluster and
# its tests need network namespaces, and PostgreSQL runs as `postgres`.

GO        ?= go
CDK_CLI   := .cdk-cli/node_modules/.bin/cdk
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: deps rootfs test check synth local down bench drill clean

## deps: install what the tests and the local cluster need (apt, the CDK CLI)
deps:
	./scripts/install-deps

## test: every test — unit, golden, CDK templates, the app against a real
## PostgreSQL, the local cluster and one drill per fault with real daemons
test: deps rootfs
	$(GO) test -count=1 -timeout 75m ./...

## rootfs: build the Debian 13 root filesystem the local cluster and the
## renderers' tool checks run the daemons from (cached; about 2 minutes once)
rootfs: deps
	$(GO) run ./cmd/pgha-local rootfs

## check: formatting, vet and staticcheck
check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "not gofmt-ed: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

## synth: synthesize every region's stack into cdk.out/ with the CDK CLI
synth: deps
	$(CDK_CLI) synth --quiet

## local: bring the whole cluster up on this machine
local: deps
	$(GO) run ./cmd/pgha-local up

## down: stop the local cluster and remove everything it made
down:
	$(GO) run ./cmd/pgha-local down

## bench: the app's throughput and latency against a local PostgreSQL
bench: deps
	$(GO) run ./app/bench

## drill: every fault, repeated, under write load; prints RTO and loss
drill: deps
	$(GO) run ./cmd/pgha-drill

clean:
	rm -rf cdk.out
