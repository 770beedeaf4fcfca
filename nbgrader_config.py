# nbgrader's configuration for this course; `autograder` loads it too. Course root: this folder.
c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)
c.CourseDirectory.course_id = "open-dl-course"
c.CourseDirectory.source_directory = "notebooks"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
# The stub names the exercise ({name} is the answer cell's grade_id: autograder's ClearSolutionsNamed)
c.ClearSolutions.code_stub = {"python": '# YOUR CODE HERE\nraise NotImplementedError("{name} is not answered yet: '
                                        'replace this line with your code")'}
c.ClearSolutionsNamed.code_stub = c.ClearSolutions.code_stub
c.ClearSolutions.enforce_metadata = True
c.Execute.timeout = 60
c.GenerateAssignment.create_assignment = True
# nbgrader's own pipeline, with ClearSolutions replaced by the stub-naming subclass
from nbgrader.converters.generate_assignment import GenerateAssignment  # noqa: E402
from autograder.notebooks import ClearSolutionsNamed  # noqa: E402

c.GenerateAssignment.preprocessors = [ClearSolutionsNamed if p.__name__ == "ClearSolutions" else p
                                      for p in GenerateAssignment.class_traits()["preprocessors"].default()]
