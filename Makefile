# The habits of the spec, one line each (ENV=prod is the sese server: never a default).
#   make lint | make check ROLE=x ENV=y | make deploy-role ROLE=x ENV=y | make rollback ENV=y | make backup ENV=y
# ENV=prod (or production) -> inventory/production/hosts.yml; any other ENV -> inventory/$(ENV)/hosts.yml.
DEPLOYER ?= deployer
INV = $(if $(filter prod production,$(ENV)),inventory/production/hosts.yml,$(if $(ENV),inventory/$(ENV)/hosts.yml,$(error ENV is required: ENV=prod or ENV=staging)))
TAGS = $(or $(ROLE),$(error ROLE is required: ROLE=plane for example))
.PHONY: lint check deploy-role rollback backup
lint: ; $(DEPLOYER) lint
check: ; $(DEPLOYER) check -i $(INV) --diff --tags $(TAGS) playbooks/site.yml
deploy-role: ; $(DEPLOYER) apply -i $(INV) --tags $(TAGS) playbooks/site.yml
rollback: ; $(DEPLOYER) rollback -i $(INV)
backup: ; $(DEPLOYER) apply -i $(INV) playbooks/backup.yml
