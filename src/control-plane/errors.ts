// EC2 errors as the API reports them: a code from the EC2 error reference and its HTTP status. Anything else that
// escapes an action is an InternalError with no detail (the detail goes to the log, not to the caller).

export class Ec2Error extends Error {
  constructor(readonly code: string, message: string, readonly status = 400) {
    super(message);
    this.name = 'Ec2Error';
  }
}

export const missing = (name: string): Ec2Error =>
  new Ec2Error('MissingParameter', `The request must contain the parameter ${name}`);

export const invalid = (message: string): Ec2Error => new Ec2Error('InvalidParameterValue', message);

/** A resource id of the right shape that this account does not have (another account's answers the same). */
export const notFound = (code: string, what: string, id: string): Ec2Error =>
  new Ec2Error(code, `The ${what} '${id}' does not exist`);
