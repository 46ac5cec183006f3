variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "eu-west-1"
}

variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "stele"
}

variable "jwt_issuer" {
  description = "Issuer (iss) of the JWTs your identity provider signs."
  type        = string
}

variable "jwt_audience" {
  description = "Accepted audiences (aud; client ids for Cognito access tokens)."
  type        = list(string)
}

variable "tenant_claim" {
  description = "JWT claim holding the tenant id."
  type        = string
  default     = "tenant_id"
}

variable "lambda_dir" {
  description = "Directory holding cargo lambda's output (<repo>/target/lambda)."
  type        = string
  default     = "../../../../target/lambda"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC this example creates."
  type        = string
  default     = "10.42.0.0/16"
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarms (null: no subscription)."
  type        = string
  default     = null
}

variable "object_lock_enabled" {
  description = "S3 Object Lock (GOVERNANCE by default) on the archive bucket: no archived object can be deleted before its retention ends. Only settable when the bucket is created; cannot be turned off."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Deletion protection of the Aurora cluster (set false only for a throwaway trial)."
  type        = bool
  default     = true
}
