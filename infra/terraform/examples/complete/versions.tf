terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.83.0, < 7.0.0" # user_pool_tier
    }
    archive = {
      source  = "hashicorp/archive"
      version = ">= 2.4.0"
    }
  }

  # Keep the state remotely for anything beyond a trial, e.g.:
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "stele/terraform.tfstate"
  #   region       = "eu-west-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project   = "stele"
      ManagedBy = "terraform"
    }
  }
}
